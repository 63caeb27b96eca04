"""Experiment: does a learnt reorder model reach issue 6's +10 % over GP-TopFreq on the Instacart sample?

Not the shipped recommender (that is `shared.domain.nextbasket.recommend`, which this compares against on the same
splits). A LightGBM classifier scores each product a user bought: P(in the next basket | the user's history). It is
trained on every training user's last `--targets` training baskets, each predicted from the baskets before it
(about 425,000 user-product rows per split), and ranks a test user's own products; free places are filled as
LeafLoaf fills them. `--context` adds what the Instacart sample has beyond the order CSV format of the evaluation
harness: each product's position in the user's carts, and the day of week and hour of the order being predicted.

    pip install lightgbm==4.6.0   # not a project dependency: the model is not adopted
    python -m bench.nextbasket_model [--seeds 5] [--targets 10] [--context] [--real-date]

`--real-date` measures reorder timing to the held-out order's real date instead of the user's expected next order.
Prints Recall@10, NDCG@10 and Recall@20 per method, averaged over the seeds, with the gain over GP-TopFreq.
"""

from __future__ import annotations

import argparse
import csv
import itertools
import statistics
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from shared.datasets import instacart_sample
from shared.domain.nextbasket import (
    Basket,
    Histories,
    evaluate,
    expected_next_day,
    fill,
    global_top,
    gp_topfreq,
    repeat_stats,
)
from shared.domain.nextbasket import recommend as leafloaf
from shared.domain.nextbasket import split_last_basket as split
from shared.evaluation import load_histories

DECAYS = (0.9, 0.7, 0.5)
SHOWN = ("recall@10", "ndcg@10", "recall@20")


@dataclass(frozen=True)
class Order:
    """What the sample says about one order beyond its products: when in the week, and each product's cart place."""

    dow: int
    hour: int
    cart_place: dict[str, float]  # product -> add_to_cart_order / basket size (0 = added first)


def sample_orders() -> dict[str, list[Order]]:
    """user id -> their orders' context, by order number (the order of `load_histories`' baskets)."""
    rows: dict[tuple[str, int], list[dict[str, str]]] = {}
    with instacart_sample().open(newline="") as file:
        for row in csv.DictReader(file):
            rows.setdefault((row["user_id"], int(row["order_number"])), []).append(row)
    orders: dict[str, list[Order]] = {}
    for (user, _), lines in sorted(rows.items()):
        places = {line["product_id"]: (float(line["add_to_cart_order"]) - 1) / len(lines) for line in lines}
        orders.setdefault(user, []).append(
            Order(int(lines[0]["order_dow"]), int(lines[0]["order_hour_of_day"]), places)
        )
    return orders


def gp_topfreq_reference(train: Histories, users: Sequence[str], k: int) -> dict[str, list[str]]:
    """GP-TopFreq as Li et al.'s code ranks it: a stable sort by count, so ties go to the product bought first."""
    popular = global_top(train, k)
    lists = {}
    for user in users:
        counts = Counter(item for basket in train[user] for item in basket.products)  # first seen, first listed
        lists[user] = fill(sorted(counts, key=lambda item: -counts[item]), popular, k)
    return lists


def product_stats(train: Histories) -> dict[str, tuple[float, float]]:
    """product -> (training order lines, share of them that were a repeat purchase by the same user)."""
    lines, repeats = Counter[str](), Counter[str]()
    for history in train.values():
        seen: set[str] = set()
        for basket in history:
            for item in dict.fromkeys(basket.products):  # distinct, in a fixed order (sets follow the hash seed)
                lines[item] += 1
                repeats[item] += item in seen
                seen.add(item)
    return {item: (lines[item], repeats[item] / lines[item]) for item in lines}


def features(
    prefix: Sequence[Basket], now: float, products: dict[str, tuple[float, float]], context: list[Order] | None
) -> tuple[list[str], list[list[float]]]:
    """One feature row per product in `prefix` (the user's baskets before the one predicted, made at day `now`)."""
    t = len(prefix)
    count, first, last = Counter[str](), dict[str, int](), dict[str, int]()
    for index, basket in enumerate(prefix):
        for item in dict.fromkeys(basket.products):  # distinct, in a fixed order (sets follow the hash seed)
            count[item] += 1
            first.setdefault(item, index)
            last[item] = index
    stats = {d: repeat_stats(prefix, d) for d in DECAYS}  # decayed counts, last day and cycle, as LeafLoaf has them
    gaps = [b - a for a, b in itertools.pairwise(basket.day or 0.0 for basket in prefix)]
    user = [t, statistics.median(gaps) if gaps else 0.0, statistics.mean(len(b.products) for b in prefix), len(count)]
    items, rows = list(count), []
    for item in items:
        repeat = stats[DECAYS[0]][item]
        cycle = -1.0 if repeat.cycle is None else repeat.cycle
        elapsed = now - (repeat.last_day or 0.0)
        streak = next((n for n, b in enumerate(reversed(prefix)) if item not in b.products), t)
        lines, repeat_rate = products.get(item, (0.0, 0.0))
        row = [
            *user,
            count[item],
            count[item] / t,
            count[item] / (t - first[item]),
            t - 1 - last[item],
            elapsed,
            cycle,
            (elapsed + 1) / (cycle + 1) if cycle >= 0 else -1.0,
            streak,
            *(stats[d][item].decayed for d in DECAYS),
            lines,
            repeat_rate,
        ]
        if context is not None:
            target, past = context[t], context[:t]
            places = [order.cart_place[item] for order in past if item in order.cart_place]
            hours = [order.hour for order in past if item in order.cart_place]
            same_day = sum(order.dow == target.dow for order in past if item in order.cart_place)
            row += [
                statistics.mean(places),
                places[-1],
                same_day / count[item],
                abs(statistics.mean(hours) - target.hour),
            ]
        rows.append(row)
    return items, rows


def model_lists(
    train: Histories,
    test: dict[str, Basket],
    seed: int,
    args: argparse.Namespace,
    context: dict[str, list[Order]] | None,
) -> dict[str, list[str]]:
    """Fit the classifier on the training histories' prefixes, then rank each test user's own products with it."""
    import lightgbm  # an experiment's dependency, not the project's

    products = product_stats(train)

    def now(history: Sequence[Basket], target: Basket) -> float:
        expected = expected_next_day(history)
        return (target.day if args.real_date else expected) or 0.0

    x, y = [], []
    for user, history in train.items():
        for t in range(max(2, len(history) - args.targets), len(history)):
            items, rows = features(history[:t], now(history[:t], history[t]), products, context and context[user])
            x += rows
            y += [item in history[t].products for item in items]
    params = {"objective": "binary", "learning_rate": 0.05, "num_leaves": 31, "min_data_in_leaf": 200}
    params |= {"bagging_fraction": 0.8, "bagging_freq": 1, "feature_fraction": 0.8, "seed": seed, "verbose": -1}
    params |= {"deterministic": True, "force_row_wise": True, "num_threads": 2}  # the same figures every run
    model = lightgbm.train(params, lightgbm.Dataset(np.array(x), np.array(y, dtype=float)), num_boost_round=300)
    users = sorted(test)
    usual = leafloaf(train, users, 20)
    lists = {}
    for user in users:
        history = train[user]
        items, rows = features(history, now(history, test[user]), products, context and context[user])
        scores = model.predict(np.array(rows))
        ranked = [items[i] for i in np.argsort(-scores, kind="stable")]
        lists[user] = fill(ranked, usual[user], 20)  # LeafLoaf's explore and popular fill for short histories
    return lists


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--targets", type=int, default=10, help="training baskets predicted per user")
    parser.add_argument("--context", action="store_true", help="add cart places and the order's day and hour")
    parser.add_argument("--real-date", action="store_true", help="time reorders to the held-out order's date")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    _, histories = load_histories(None)
    context = sample_orders() if args.context else None
    totals: dict[str, Counter[str]] = {}
    for seed in range(args.seeds):
        data = split(histories, 0.2, seed)
        users = sorted(data.test)
        truth = {user: data.test[user].products for user in users}
        compared = {
            "model": model_lists(data.train, data.test, seed, args, context),
            "leafloaf": leafloaf(data.train, users, 20),
            "gp_topfreq": gp_topfreq(data.train, users, 20),
            "gp_topfreq_reference": gp_topfreq_reference(data.train, users, 20),
        }
        scores = {name: evaluate(lists, truth) for name, lists in compared.items()}
        for name, metrics in scores.items():
            totals.setdefault(name, Counter()).update({m: v / args.seeds for m, v in metrics.items()})
        shown = ", ".join(f"{name} {metrics['recall@10']:.4f}" for name, metrics in scores.items())
        print(f"seed {seed}: recall@10 {shown}", file=sys.stderr, flush=True)
    for baseline in ("gp_topfreq", "gp_topfreq_reference"):
        base = totals[baseline]
        print(f"{'method':<21}" + "".join(f"{m:>20}" for m in SHOWN) + f"   (gain over {baseline})")
        for name, scores in totals.items():
            print(f"{name:<21}" + "".join(f"{scores[m]:>10.4f} ({scores[m] / base[m] - 1:+6.1%})" for m in SHOWN))
    print(f"{args.seeds} seeds in {time.perf_counter() - started:.0f} s", file=sys.stderr)


if __name__ == "__main__":
    main()
