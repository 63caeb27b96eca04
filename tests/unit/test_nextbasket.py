"""Next-basket evaluation: metrics, baselines, the split, LeafLoaf's recommender and the `evaluate` command."""

from __future__ import annotations

import csv
import json
import math
import random
from dataclasses import replace

import pytest

from shared.cli import main
from shared.domain.nextbasket import (
    CANDIDATES,
    Basket,
    Params,
    RepeatStats,
    TifuParams,
    basket_groups,
    evaluate,
    g_topfreq,
    global_top,
    gp_topfreq,
    ndcg_at_k,
    p_topfreq,
    personal_top,
    phr_at_k,
    recall_at_k,
    recommend,
    split_last_basket,
    tifu_knn,
    tifu_vector,
    timing_factor,
    tune,
)
from shared.evaluation import load_histories, run


def baskets(*orders: str, gap: float | None = None) -> list[Basket]:
    """Baskets from space-separated product ids, `gap` days apart (None: untimed)."""
    return [Basket(tuple(o.split()), None if gap is None else i * gap) for i, o in enumerate(orders)]


# --- metrics ---------------------------------------------------------------------------------------------------


def test_metrics_match_hand_computed_values():
    ranked, truth = ["a", "b", "c", "d"], {"b", "d", "e"}
    ideal3 = 1 + 1 / math.log2(3) + 1 / math.log2(4)
    assert recall_at_k(ranked, truth, 3) == pytest.approx(1 / 3)
    assert ndcg_at_k(ranked, truth, 3) == pytest.approx((1 / math.log2(3)) / ideal3)
    assert phr_at_k(ranked, truth, 3) == 1.0
    assert recall_at_k(ranked, truth, 4) == pytest.approx(2 / 3)
    assert ndcg_at_k(ranked, truth, 4) == pytest.approx((1 / math.log2(3) + 1 / math.log2(5)) / ideal3)


def test_ideal_dcg_counts_at_most_k_hits_and_misses_score_zero():
    truth = {"x", "p", "q", "r", "s"}
    assert recall_at_k(["x", "y"], truth, 2) == pytest.approx(1 / 5)
    assert ndcg_at_k(["x", "y"], truth, 2) == pytest.approx(1 / (1 + 1 / math.log2(3)))
    assert ndcg_at_k(["p", "q"], truth, 2) == pytest.approx(1.0)  # a perfect top-2 although |truth| > 2
    assert (recall_at_k(["y"], truth, 10), ndcg_at_k(["y"], truth, 10), phr_at_k(["y"], truth, 10)) == (0, 0, 0)


def test_evaluate_averages_over_test_users_and_scores_missing_lists_zero():
    scores = evaluate({"u1": ["a", "b"]}, {"u1": {"a", "b"}, "u2": {"c"}}, [("recall", 2), ("phr", 2)])
    assert scores == {"recall@2": 0.5, "phr@2": 0.5}


# --- baselines -------------------------------------------------------------------------------------------------

TRAIN = {"u1": baskets("a b", "a c", "c"), "u2": baskets("a", "d")}


def test_g_topfreq_counts_each_order_line_once():
    assert global_top(TRAIN, 3) == ["a", "c", "b"]  # a: 3 orders, c: 2, then b and d (1 each) by id
    assert global_top({"u": [Basket(("z", "z", "z")), Basket(("y",))]}, 2) == ["y", "z"]  # a repeated line: once
    assert g_topfreq(TRAIN, ["u1", "new"], 2) == {"u1": ["a", "c"], "new": ["a", "c"]}


def test_p_topfreq_ranks_by_orders_then_recency_then_id():
    assert personal_top(TRAIN["u1"], 3) == ["c", "a", "b"]  # a and c in 2 orders each; c more recently
    assert personal_top(baskets("y x"), 2) == ["x", "y"]
    assert p_topfreq(TRAIN, ["u2", "new"], 5) == {"u2": ["d", "a"], "new": []}


def test_gp_topfreq_fills_the_personal_list_with_popular_products():
    assert gp_topfreq(TRAIN, ["u2"], 3) == {"u2": ["d", "a", "c"]}
    assert gp_topfreq(TRAIN, ["u1"], 2) == {"u1": ["c", "a"]}


# --- the split -------------------------------------------------------------------------------------------------


def shoppers(n: int = 50) -> dict[str, list[Basket]]:
    """n users with 3 orders each (the last holds a product nobody else ever buys) and one single-order user."""
    out = {f"u{i:02d}": baskets("milk bread", f"eggs p{i % 5}", f"milk fresh-{i}", gap=7.0) for i in range(n)}
    out["once"] = baskets("milk")
    return out


def test_split_is_seeded_and_holds_out_the_last_basket():
    histories = shoppers()
    split = split_last_basket(histories, 0.2, seed=3)
    assert split == split_last_basket(histories, 0.2, seed=3)
    assert set(split.test) != set(split_last_basket(histories, 0.2, seed=4).test)
    assert len(split.test) == 10 and "once" not in split.test
    for user, history in histories.items():
        if user in split.test:
            assert split.test[user] == history[-1] and list(split.train[user]) == history[:-1]
        else:
            assert list(split.train[user]) == history


def test_test_baskets_never_reach_training_popularity_or_any_list():
    histories = shoppers()
    split = split_last_basket(histories, 0.2, seed=0)
    held_out = {f"fresh-{int(user[1:])}" for user in split.test}
    assert held_out.isdisjoint(global_top(split.train, 1000))
    users = sorted(split.test)
    for lists in (
        recommend(split.train, users, 20),
        gp_topfreq(split.train, users, 20),
        tifu_knn(split.train, users, 20),
    ):
        for user, ranked in lists.items():
            assert f"fresh-{int(user[1:])}" not in ranked


# --- TIFU-KNN ---------------------------------------------------------------------------------------------------


def test_baskets_split_into_groups_as_the_reference_code_does():
    assert basket_groups(7, 3) == [range(0, 2), range(2, 4), range(4, 7)]  # the last 7 mod 3 groups one longer
    assert basket_groups(6, 3) == [range(0, 2), range(2, 4), range(4, 6)]
    assert basket_groups(2, 3) == [range(0, 1), range(1, 2)]  # fewer baskets than groups: a group each


def test_tifu_vector_decays_baskets_over_the_whole_history_and_groups_from_the_group_count():
    params = TifuParams(within_decay=0.5, group_decay=0.5, groups=2)
    # Baskets weigh 0.5² = 0.25, 0.5 and 1 (decay counted over all 3 baskets, not restarted per group). Groups:
    # [a] and [a b, b c]; group 1 weighs 0.5 and holds 1 basket, group 2 weighs 1 and holds 2; the sum is halved.
    # a = (0.5 × 0.25 / 1 + 1 × 0.5 / 2) / 2 = 0.1875; b = (0.5 + 1) / 2 / 2 = 0.375; c = 1 / 2 / 2 = 0.25.
    vector = tifu_vector(baskets("a", "a b", "b c"), params)
    assert vector == pytest.approx({"a": 0.1875, "b": 0.375, "c": 0.25})
    # 2 baskets, 3 groups: each basket is a group, still weighed 0.5² and 0.5¹ (exponents from the 3 groups).
    # x = 0.5 (basket) × 0.25 (group) / 2 = 0.0625; y = 1 × 0.5 / 2 = 0.25.
    assert tifu_vector(baskets("x", "y"), replace(params, groups=3)) == pytest.approx({"x": 0.0625, "y": 0.25})


def test_tifu_knn_mixes_the_users_vector_with_the_mean_of_the_k_nearest_others():
    # One group, no decay: a vector is the share of the user's baskets holding each product.
    train = {
        "me": baskets("a b", "a"),  # a 1, b 0.5
        "n1": baskets("a c", "a c"),  # a 1, c 1: squared distance to me 0.25 + 1 = 1.25
        "n2": baskets("a", "a c"),  # a 1, c 0.5: squared distance 0.25 + 0.25 = 0.5
        "far": baskets("d", "d"),  # d 1: squared distance 1 + 0.25 + 1 = 2.25
        "big": baskets("a b c d e", "a b c d e"),  # the largest dot product with me (1.5), but distance 3.25
    }
    mixed = TifuParams(neighbours=2, within_decay=1.0, group_decay=1.0, alpha=0.7, groups=1)
    # The 2 nearest others (n2 and n1) average to a 1, c 0.75. alpha 0.7: a 0.7 + 0.3 = 1, b 0.35,
    # c 0.225; d scores 0 and is not listed. (Summing the neighbours, or swapping alpha, puts c before b.)
    assert tifu_knn(train, ["me"], 10, mixed) == {"me": ["a", "b", "c"]}
    # alpha 0.5: b 0.25 < c 0.375. (Counting me as my own neighbour would give b 0.375 > c 0.125.)
    assert tifu_knn(train, ["me"], 10, replace(mixed, alpha=0.5)) == {"me": ["a", "c", "b"]}


# --- LeafLoaf ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("gap", [7.0, None])
def test_a_weekly_product_outranks_one_bought_once_even_last_week(gap):
    history = baskets("milk", "milk", "milk", "milk", "milk", "milk candles", gap=gap)
    train = {"me": history, "other": baskets("candles soda", "soda")}
    assert recommend(train, ["me"], 2)["me"] == ["milk", "candles"]


def test_timing_factor_peaks_on_the_reorder_cycle():
    weekly = RepeatStats(decayed=3.0, last_day=14.0, cycle=7.0)
    assert timing_factor(weekly, 21.0) == pytest.approx(1.0)
    assert timing_factor(weekly, 15.0) < timing_factor(weekly, 18.0) < 1.0
    assert timing_factor(RepeatStats(1.0, 14.0, None), 21.0) == 0.5  # no cycle known: undecided


def test_recency_decay_prefers_what_the_user_buys_these_days():
    history = baskets("old", "old", "old", "new", "new")  # 3 old orders vs 2 recent ones
    assert recommend({"me": history}, ["me"], 1, Params(decay=0.5))["me"] == ["new"]
    assert recommend({"me": history}, ["me"], 1, Params(decay=1.0))["me"] == ["old"]


def test_the_neighbour_weight_lets_similar_shoppers_reorder_the_users_products():
    train = {"me": baskets("x", "y"), **{f"o{i}": baskets("x", "x") for i in range(3)}}  # the others all buy x
    assert recommend(train, ["me"], 2, Params(0.999, 0.0, 0.0))["me"] == ["y", "x"]  # mine alone: y, more recent
    assert recommend(train, ["me"], 2, Params(0.999, 0.0, 1.0))["me"] == ["x", "y"]


def test_free_places_go_to_similar_products_then_popular_ones():
    train = {
        "me": baskets("bread"),
        "a": baskets("bread butter"),
        "b": baskets("bread butter jam"),
        **{f"s{i}": baskets("soda") for i in range(5)},  # soda is the most bought, but not with bread
    }
    ranked = recommend(train, ["me"], 4)["me"]
    assert ranked[:3] == ["bread", "butter", "jam"] and ranked[3] == "soda"


def test_lists_start_with_the_users_own_products_and_are_deterministic():
    rng = random.Random(1)
    catalog = [f"p{i}" for i in range(60)]
    train = {f"u{u}": [Basket(tuple(rng.sample(catalog, 8)), 7.0 * d) for d in range(6)] for u in range(30)}
    users = sorted(train)
    lists = recommend(train, users, 10)
    assert lists == recommend(train, users, 10)
    for user in users:
        own = {item for basket in train[user] for item in basket.products}
        assert len(lists[user]) == 10 and set(lists[user]) <= own  # >= 10 own products: no explore needed


# --- the command ------------------------------------------------------------------------------------------------


def write_orders(path, users: int = 40, timed: bool = False) -> None:
    """A small order CSV with opaque string ids (and days between orders when `timed`)."""
    rng = random.Random(5)
    catalog = [f"SKU:{rng.getrandbits(32):08x}/x" for _ in range(30)]
    with path.open("w", newline="") as file:
        out = csv.writer(file)
        out.writerow(["user_id", "order_id", "order_number", "product_id", *(["days_since_prior_order"] * timed)])
        for u in range(users):
            staples = rng.sample(catalog, 4)
            for n in range(1, rng.randint(1, 6) + 1):
                items = set(rng.sample(staples, 3)) | set(rng.sample(catalog, 2))
                for item in sorted(items):
                    days = [] if not timed else ["" if n == 1 else str(rng.randint(3, 10))]
                    out.writerow([f"cust-{u:03d}-é", f"ord-{u}-{n}", n, item, *days])


def test_evaluate_command_writes_the_report(tmp_path, capsys):
    orders, report = tmp_path / "orders.csv", tmp_path / "report.json"
    write_orders(orders)
    assert main(["evaluate", "--orders", str(orders), "--json", str(report), "--seed", "3", "--seeds", "2"]) == 0
    result = json.loads(report.read_text())
    assert set(result) == {"dataset", "users", "test_users", "seeds", "methods"}
    assert (result["dataset"], result["users"], result["seeds"]) == ("orders.csv", 40, [3, 4])
    assert 0 < result["test_users"] < 40
    assert list(result["methods"]) == ["leafloaf", "g_topfreq", "p_topfreq", "gp_topfreq", "tifu_knn"]
    for scores in result["methods"].values():
        assert list(scores) == ["recall@10", "ndcg@10", "phr@10", "recall@20", "ndcg@20"]
        assert all(0.0 <= value <= 1.0 for value in scores.values())
    out, err = capsys.readouterr()
    assert "leafloaf" in out and "gp_topfreq" in out and "seed 4" in err


def test_order_timing_is_used_only_when_the_file_has_it(tmp_path):
    untimed, timed = tmp_path / "untimed.csv", tmp_path / "timed.csv"
    write_orders(untimed)
    write_orders(timed, timed=True)
    assert all(b.day is None for h in load_histories(untimed)[1].values() for b in h)
    days = [[b.day for b in h] for h in load_histories(timed)[1].values()]
    assert all(d is not None for h in days for d in h) and all(h == sorted(h) for h in days)


@pytest.mark.parametrize(
    "content", ["user_id,product_id\n1,2\n", "user_id,order_id,order_number,product_id\n1,o,x,p\n"]
)
def test_a_bad_order_file_is_a_clear_error_with_exit_code_2(tmp_path, capsys, content):
    bad = tmp_path / "bad.csv"
    bad.write_text(content)
    assert main(["evaluate", "--orders", str(bad)]) == 2
    assert capsys.readouterr().err.startswith("error: ")
    assert main(["evaluate", "--orders", str(tmp_path / "missing.csv")]) == 2


# --- the real Instacart sample ----------------------------------------------------------------------------------


def test_leafloaf_beats_gp_topfreq_on_the_instacart_sample():
    name, histories = load_histories(None)  # ./dev test installs the sample (requirements-nodeps.txt)
    result = run(histories, name, seed=0)["methods"]
    assert result["leafloaf"]["recall@10"] > result["gp_topfreq"]["recall@10"]
    assert result["leafloaf"]["ndcg@10"] > result["gp_topfreq"]["ndcg@10"]


def test_tuning_follows_the_data_habits_or_recent_tastes():
    # Habit: 6 baskets alternate between two staple sets, each staple bought in half of them; the
    # old favourite "a" (5 of 6) beats the recent one-off "z" only by counts.
    habit = {
        f"h{u}": [Basket(("a", "b")), Basket(("a", "c"))] * 2 + [Basket(("z",)), Basket(("a", "b"))] for u in range(20)
    }
    assert tune(habit, k=1).decay == 0.999  # plain counts: "a"
    # Drift: every shopper switched from "old" (4 baskets) to "new" (4 since) and keeps buying "new".
    drift = {f"d{u}": [Basket(("old",))] * 4 + [Basket(("new",))] * 4 for u in range(20)}
    assert tune(drift, k=1).decay < 0.999  # recency wins: "new"
    assert tune({"solo": [Basket(("a",))]}) == Params(0.999, 0.0, 0.0)  # nobody to tune on: the first candidate


def test_tuning_blends_in_neighbours_when_they_predict_better():
    # Every shopper alternates between the shared staple "c" and a product of their own: their own history
    # favours whichever came last, their neighbours favour "c", which is right in 2 of the 3 tuning baskets.
    alternating = {f"u{u}": [Basket(("c",)), Basket((f"own{u}",))] * 3 + [Basket(("c",))] for u in range(20)}
    assert tune(alternating, k=1).neighbour_weight > 0
    assert tune(alternating, k=1, candidates=[p for p in CANDIDATES if not p.neighbour_weight]).neighbour_weight == 0
