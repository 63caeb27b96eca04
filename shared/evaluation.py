"""Offline next-basket evaluation: LeafLoaf's recommender against the frequency baselines and TIFU-KNN.

Protocol (Li et al., "A Next Basket Recommendation Reality Check", TOIS 2023): per seed, a random share of the
users with at least 2 orders become test users and their last basket is held out; everything else trains every
method; Recall@K, NDCG@K and PHR@K are averaged over the test users, then over the seeds. See docs/EVALUATION.md.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

from shared.datasets import EPOCH, OrderFileError, OrderRow, instacart_sample, order_records, read_order_rows
from shared.domain.nextbasket import (
    REPORTED,
    Basket,
    Histories,
    Params,
    evaluate,
    g_topfreq,
    gp_topfreq,
    p_topfreq,
    recommend,
    split_last_basket,
    tifu_knn,
)

INSTACART = "instacart-sample"
DAY = timedelta(days=1)
Recommender = Callable[[Histories, list[str], int], dict[str, list[str]]]


def methods(params: Params | None = None) -> dict[str, Recommender]:
    """The compared methods by report name: LeafLoaf first, then the baselines."""
    return {
        "leafloaf": lambda train, users, k: recommend(train, users, k, params),
        "g_topfreq": g_topfreq,
        "p_topfreq": p_topfreq,
        "gp_topfreq": gp_topfreq,
        "tifu_knn": tifu_knn,
    }


def load_histories(orders: str | Path | None = None) -> tuple[str, dict[str, list[Basket]]]:
    """Every user's baskets, oldest first, from an order CSV (None or "instacart": the Instacart sample).

    Args:
        orders: path of a `user_id,order_id,order_number,product_id[,days_since_prior_order|timestamp]` CSV.

    Returns:
        (dataset name, user id -> baskets); basket days are set only when the file gives order timing.

    Raises:
        OrderFileError: the file is not an order history.
        FileNotFoundError: no such file (or the Instacart sample is not installed).
    """
    path = instacart_sample() if orders in (None, "instacart") else Path(str(orders))
    name = INSTACART if orders in (None, "instacart") else path.name
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    timed = False
    moments: dict[tuple[str, str], tuple[int | None, int | None]] = {}  # (user, order) -> (weekday, hour)

    def watch(rows: Iterable[OrderRow]) -> Iterator[OrderRow]:
        nonlocal timed
        for row in rows:
            timed = timed or row.timestamp is not None or row.days_since_prior is not None
            moments.setdefault((row.user_id, row.order_id), _moment(row))
            yield row

    records = order_records(watch(read_order_rows(path)))  # one user's orders come out oldest first
    histories: dict[str, list[Basket]] = {}
    for record in records:
        day = (record.placed_at - EPOCH) / DAY if timed else None
        weekday, hour = moments[(record.user_id, record.order_id)]
        basket = Basket(tuple(line.product_id for line in record.lines), day, weekday, hour)
        histories.setdefault(record.user_id, []).append(basket)
    if timed:  # given timestamps need not follow order numbers
        for baskets in histories.values():
            baskets.sort(key=lambda b: b.day or 0.0)
    return name, histories


def _moment(row: OrderRow) -> tuple[int | None, int | None]:
    """(weekday 0 = Sunday, hour) of an order: its timestamp's, else the file's columns."""
    if row.timestamp is not None:
        return row.timestamp.isoweekday() % 7, row.timestamp.hour
    return row.weekday, row.hour


def run(
    histories: Histories,
    dataset: str,
    seed: int = 0,
    seeds: int = 1,
    test_fraction: float = 0.2,
    params: Params | None = None,
    log: Callable[[str], None] = lambda message: None,
) -> dict[str, Any]:
    """Evaluate every method on the same split per seed and average the metrics over the seeds.

    Args:
        histories: every user's baskets, oldest first.
        dataset: name reported in the result.
        seed: first seed; the run uses seed, seed + 1, ... seed + seeds - 1.
        seeds: how many splits to average.
        test_fraction: share of the users with at least 2 orders held out as test users.
        params: LeafLoaf's knobs (default: tuned on each split's training data, nextbasket.tune).
        log: receives progress lines.

    Returns:
        {"dataset", "users", "test_users", "seeds", "methods": {name: {"recall@10": ..., ...}}}.

    Raises:
        OrderFileError: no user has the 2 orders a test user needs.
    """
    if seeds < 1:
        raise ValueError(f"seeds must be at least 1, got {seeds}")
    k = max(cut for _, cut in REPORTED)
    compared = methods(params)
    totals: dict[str, dict[str, float]] = {name: {} for name in compared}
    seed_list = [seed + i for i in range(seeds)]
    test_users = 0
    for current in seed_list:
        split = split_last_basket(histories, test_fraction, current)
        if not split.test:
            raise OrderFileError(f"{dataset}: no test users (need users with at least 2 orders and test_fraction > 0)")
        users = sorted(split.test)
        truth = {user: split.test[user].products for user in users}
        test_users = len(users)
        for name, method in compared.items():
            started = time.perf_counter()
            scores = evaluate(method(split.train, users, k), truth)
            for metric, value in scores.items():
                totals[name][metric] = totals[name].get(metric, 0.0) + value / seeds
            log(
                f"seed {current}: {name} on {len(users)} test users in {time.perf_counter() - started:.1f} s "
                f"(recall@10 {scores['recall@10']:.4f})"
            )
    return {
        "dataset": dataset,
        "users": len(histories),
        "test_users": test_users,
        "seeds": seed_list,
        "methods": {name: {metric: round(value, 4) for metric, value in m.items()} for name, m in totals.items()},
    }


def table(report: dict[str, Any]) -> str:
    """The report's metrics as an aligned text table, one method per row."""
    metrics = list(next(iter(report["methods"].values())))
    width = max(len(name) for name in report["methods"])
    lines = [
        f"{report['dataset']}: {report['users']} users, {report['test_users']} test users, "
        + (f"{report['queries']} queries (last seed), " if "queries" in report else "")
        + f"seeds {report['seeds']}",
        " ".join([f"{'method':<{width}}", *(f"{m:>9}" for m in metrics)]),
    ]
    for name, scores in report["methods"].items():
        lines.append(" ".join([f"{name:<{width}}", *(f"{scores[m]:>9.4f}" for m in metrics)]))
    return "\n".join(lines)


def evaluate_orders(
    orders: str | Path | None = None,
    json_path: str | Path | None = None,
    seed: int = 0,
    seeds: int = 1,
    test_fraction: float = 0.2,
    params: Params | None = None,
) -> dict[str, Any]:
    """Load an order CSV, evaluate all methods, write the JSON report (if asked) and print the table.

    Args:
        orders: order CSV path; None or "instacart" = the installed Instacart sample.
        json_path: where to write the report as JSON (None: do not write).
        seed: first seed.
        seeds: number of seeds averaged.
        test_fraction: share of eligible users held out.
        params: LeafLoaf's knobs.

    Returns:
        The report (see `run`).
    """

    started = time.perf_counter()
    dataset, histories = load_histories(orders)
    log(
        f"loaded {dataset}: {len(histories)} users, {sum(map(len, histories.values()))} orders "
        f"in {time.perf_counter() - started:.1f} s"
    )
    report = run(histories, dataset, seed, seeds, test_fraction, params, log)
    write_report(report, json_path, started)
    return report


def log(message: str) -> None:
    """Progress goes to stderr; the table goes to stdout."""
    print(message, file=sys.stderr, flush=True)


def write_report(report: dict[str, Any], json_path: str | Path | None, started: float) -> None:
    """Write the report as JSON (when asked), print its table and the time since `started`."""
    if json_path is not None:
        Path(json_path).write_text(json.dumps(report, indent=2) + "\n")
        log(f"wrote {json_path}")
    print(table(report))
    log(f"done in {time.perf_counter() - started:.1f} s")
