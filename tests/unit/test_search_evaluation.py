"""Search replay evaluation (`evaluate-search`): metrics, queries and baselines checked by hand, an end-to-end
run on a hand-made store whose orderings are obvious, and bad input."""

from __future__ import annotations

import json
import math
from collections import Counter
from datetime import timedelta

import pytest

import shared.search_evaluation as search_evaluation
from shared.adapters.catalog.files import load_catalog_file
from shared.cli import main
from shared.domain.catalog import Catalog, Product
from shared.domain.events import EventType
from shared.domain.nextbasket import Basket
from shared.domain.ranker_training import purchase_events
from shared.evaluation import load_histories
from shared.search_evaluation import (
    DEPTH,
    METHODS,
    NOW,
    Query,
    baselines,
    order_counts,
    queries,
    reciprocal_rank,
    run,
    scores,
)

G2, G3, G4 = 1 / math.log2(3), 1 / math.log2(4), 1 / math.log2(5)  # DCG gain of a hit at rank 2, 3, 4


# --- metrics -----------------------------------------------------------------------------------------------------


def test_two_relevant_at_ranks_1_and_3():
    # DCG = 1 + 1/log2(4); the ideal puts both on top: 1 + 1/log2(3). Both found: recall 1. First hit at 1: MRR 1.
    got = scores(["a", "x", "b", "y"], {"a", "b"})
    assert got == pytest.approx({"ndcg@10": (1 + G3) / (1 + G2), "recall@10": 1.0, "mrr": 1.0})


def test_one_of_three_relevant_found_at_rank_3():
    # DCG = 1/log2(4); ideal = 1 + 1/log2(3) + 1/log2(4) (three relevant); recall 1/3; MRR 1/3.
    got = scores(["x", "y", "a", "z"], {"a", "b", "c"})
    assert got == pytest.approx({"ndcg@10": G3 / (1 + G2 + G3), "recall@10": 1 / 3, "mrr": 1 / 3})


def test_ndcg_and_recall_stop_at_10_but_mrr_looks_down_to_the_answer_depth():
    misses = [f"x{i}" for i in range(10)]
    # The only relevant product at rank 11: outside the top 10, so NDCG and recall are 0; MRR is 1/11.
    assert scores([*misses, "a"], {"a"}) == pytest.approx({"ndcg@10": 0.0, "recall@10": 0.0, "mrr": 1 / 11})
    # MRR is cut at the served answer's length (DEPTH = 100): rank 100 counts, rank 101 does not.
    assert reciprocal_rank([f"x{i}" for i in range(DEPTH - 1)] + ["a"], {"a"}) == pytest.approx(1 / DEPTH)
    assert scores([f"x{i}" for i in range(DEPTH)] + ["a"], {"a"})["mrr"] == 0.0


def test_the_ideal_ranking_counts_at_most_10_relevant():
    # 12 relevant products ranked first: the ideal DCG sums 10 hits, so a perfect top 10 scores NDCG 1;
    # recall@10 is 10/12.
    truth = [f"r{i}" for i in range(12)]
    assert scores(truth, set(truth)) == pytest.approx({"ndcg@10": 1.0, "recall@10": 10 / 12, "mrr": 1.0})


def test_reciprocal_rank_and_scores_of_nothing():
    assert reciprocal_rank(["x", "a", "b"], {"a", "b"}) == 0.5  # the first hit counts, not the best
    assert reciprocal_rank([], {"a"}) == 0.0
    assert reciprocal_rank(["a"], set()) == 0.0
    assert scores(["a", "b"], set()) == {"ndcg@10": 0.0, "recall@10": 0.0, "mrr": 0.0}
    assert scores([], {"a"}) == {"ndcg@10": 0.0, "recall@10": 0.0, "mrr": 0.0}


# --- queries and baselines ---------------------------------------------------------------------------------------


def item(pid: str, category: str) -> Product:
    return Product(id=pid, name=f"{pid} {category}", category=category, department="aisle")


def test_one_query_per_category_of_the_held_out_basket():
    catalog = Catalog([item("m1", "milk"), item("m2", "milk"), item("b1", "bread"), item("e1", "eggs")])
    # Two milks and a bread; "gone" is not in the catalog (a discontinued product), so it makes no query.
    basket = Basket(("m2", "b1", "gone", "m1"), 30.0)
    assert queries("ann", basket, catalog) == [
        Query("ann", "bread", frozenset({"b1"})),
        Query("ann", "milk", frozenset({"m1", "m2"})),
    ]
    assert queries("ann", Basket(("gone",)), catalog) == []


def test_baselines_reorder_exactly_the_candidates():
    candidates = ["a", "b", "c", "d"]  # base (BM25) order
    popularity = Counter({"c": 5, "b": 5, "d": 1, "z": 99})  # z is popular but not a candidate
    own = Counter({"d": 2, "a": 1, "c": 1})
    ranked = baselines(candidates, popularity, own)
    assert ranked["plain"] == ["a", "b", "c", "d"]
    # By orders holding each product; b and c tie at 5 and keep their base order; a was never ordered.
    assert ranked["popularity"] == ["b", "c", "d", "a"]
    # The shopper's own count first (d 2; a and c 1, c the more popular), then the store's (b 5).
    assert ranked["own_then_popularity"] == ["d", "c", "a", "b"]
    assert baselines([], popularity, own) == {"plain": [], "popularity": [], "own_then_popularity": []}


def test_order_counts_count_orders_not_units():
    assert order_counts([Basket(("a", "b")), Basket(("a",)), Basket(("c", "a"))]) == Counter({"a": 3, "b": 1, "c": 1})


def test_replayed_purchases_end_at_now():
    orders = purchase_events("ann", [Basket(("a", "b"), 0.0), Basket(("a",), 10.0)], [0.0, 10.0], 14.0)
    events = [event for order in orders for event in order]
    assert [(e.product_id, e.timestamp) for e in events] == [
        ("a", NOW - timedelta(days=14)),
        ("b", NOW - timedelta(days=14)),
        ("a", NOW - timedelta(days=4)),
    ]
    assert all(e.event_type is EventType.PURCHASE and e.user_id == "ann" for e in events)
    assert len({e.event_id for e in events}) == 3  # the same product in two orders is two purchases


# --- a hand-made store, end to end -------------------------------------------------------------------------------

# Every name is two words plus its category and department, so a category's products tie on BM25 and
# the plain order is the catalog's.
CATALOG_CSV = """id,name,category,department
m1,Whole Milk,milk,dairy
m2,Skim Milk,milk,dairy
m3,Oat Milk,milk,dairy
b1,Rye Bread,bread,bakery
b2,White Bread,bread,bakery
b3,Sourdough Bread,bread,bakery
"""

# Everyone's last order is held out (--test-fraction 1). Training orders hold m1 3 times (alice), m3 4 times
# (bob, carol), m2 never; b1 twice, b2 once, and b3 never: b3 is bought ONLY in the three held-out orders, and
# would be the most ordered bread if a held-out order leaked into training.
ORDERS = [  # (user, order id, order number, products)
    ("alice", "o1", 1, "m1"),
    ("alice", "o2", 2, "m1"),
    ("alice", "o3", 3, "m1"),
    ("alice", "o4", 4, "m1 b3"),  # held out
    ("bob", "o5", 1, "m3 b1"),
    ("bob", "o6", 2, "m3 b1"),
    ("bob", "o7", 3, "m2 b3"),  # held out
    ("carol", "o8", 1, "m3 b2"),
    ("carol", "o9", 2, "m3"),
    ("carol", "o10", 3, "m1 b3"),  # held out
]

# Queries (per shopper, "bread" then "milk") and where each ordering puts the relevant product:
#   plain (catalog order m1 m2 m3 | b1 b2 b3): bread b3 at 3 (x3); milk alice m1 1, bob m2 2, carol m1 1.
#   popularity (m3 4, m1 3, m2 0 | b1 2, b2 1, b3 0): bread b3 at 3 (x3); milk alice m1 2, bob m2 3, carol m1 2.
#   own_then_popularity: alice (m1 x3) milk m1 m3 m2 -> 1; bob (m3, b1) milk m3 m1 m2 -> m2 at 3;
#     carol (m3, b2) milk m3 m1 m2 -> m1 at 2; bread: b1 b2 b3 (alice, bob), b2 b1 b3 (carol) -> b3 at 3.
# One relevant product per query: NDCG = 1/log2(rank + 1), MRR = 1/rank, recall 1 (3 candidates only).
EXPECTED = {
    "plain": {"ndcg@10": (3 * G3 + 1 + G2 + 1) / 6, "recall@10": 1.0, "mrr": (3 / 3 + 1 + 1 / 2 + 1) / 6},
    "popularity": {
        "ndcg@10": (3 * G3 + G2 + G3 + G2) / 6,
        "recall@10": 1.0,
        "mrr": (3 / 3 + 1 / 2 + 1 / 3 + 1 / 2) / 6,
    },
    "own_then_popularity": {
        "ndcg@10": (3 * G3 + 1 + G3 + G2) / 6,
        "recall@10": 1.0,
        "mrr": (3 / 3 + 1 + 1 / 3 + 1 / 2) / 6,
    },
}


@pytest.fixture()
def store(tmp_path):
    """(orders CSV, catalog CSV) of the hand-made store; a week between orders."""
    orders = tmp_path / "orders.csv"
    lines = ["user_id,order_id,order_number,product_id,days_since_prior_order"]
    for user, order, number, products in ORDERS:
        lines += [f"{user},{order},{number},{pid},{'' if number == 1 else 7}" for pid in products.split()]
    orders.write_text("\n".join(lines) + "\n")
    catalog = tmp_path / "catalog.csv"
    catalog.write_text(CATALOG_CSV)
    return orders, catalog


def assert_baselines_match_hand_figures(methods: dict) -> None:
    for name, metrics in EXPECTED.items():
        assert methods[name] == pytest.approx(metrics, abs=1e-4), name


def test_end_to_end_orderings_and_metrics_by_hand(store, rules, monkeypatch):
    orders, catalog_file = store
    dataset, histories = load_histories(orders)
    catalog = Catalog(load_catalog_file(catalog_file))
    trained_on, seen = [], {}
    real_build, real_baselines = search_evaluation.build_artifact, search_evaluation.baselines

    def build_artifact(version, histories, *args, **kwargs):  # records what the ranking is trained on
        trained_on.append({user: list(baskets) for user, baskets in histories.items()})
        return real_build(version, histories, *args, **kwargs)

    def baselines(candidates, popularity, own):  # records each query's orderings
        ranked = real_baselines(candidates, popularity, own)
        seen[(tuple(sorted(own)), tuple(candidates))] = ranked
        return ranked

    monkeypatch.setattr(search_evaluation, "build_artifact", build_artifact)
    monkeypatch.setattr(search_evaluation, "baselines", baselines)
    report = run(histories, catalog, rules, dataset, test_fraction=1.0)

    assert set(report) == {"dataset", "users", "test_users", "queries", "seeds", "methods"}
    assert (report["dataset"], report["users"], report["test_users"], report["queries"]) == ("orders.csv", 3, 3, 6)
    assert report["seeds"] == [0]
    assert list(report["methods"]) == list(METHODS)
    for metrics in report["methods"].values():
        assert set(metrics) == {"ndcg@10", "recall@10", "mrr"}
        assert all(0.0 <= v <= 1.0 for v in metrics.values())
    assert_baselines_match_hand_figures(report["methods"])
    # The served ranking shows all three candidates of each query, so it finds every relevant product.
    assert report["methods"]["leafloaf"]["recall@10"] == 1.0

    # The held-out (last) orders never reach training: the ranking is trained on the earlier ones only.
    assert trained_on == [{user: baskets[:-1] for user, baskets in histories.items()}]
    # Alice always bought m1: her own count puts it first, while the store's count puts m3 (4 orders) first.
    alice_milk = seen[(("m1",), ("m1", "m2", "m3"))]
    assert alice_milk["own_then_popularity"] == ["m1", "m3", "m2"]
    assert alice_milk["popularity"] == ["m3", "m1", "m2"]
    # b3 was bought only in held-out orders: no training order holds it, so popularity ranks it last.
    assert seen[(("m1",), ("b1", "b2", "b3"))]["popularity"] == ["b1", "b2", "b3"]
    assert seen[(("b2", "m3"), ("b1", "b2", "b3"))]["own_then_popularity"] == ["b2", "b1", "b3"]
    assert len(seen) == 6


def test_the_command_writes_the_report_and_a_table(store, tmp_path, capsys):
    orders, catalog = store
    out = tmp_path / "report.json"
    argv = ["evaluate-search", "--orders", str(orders), "--catalog", str(catalog), "--test-fraction", "1"]
    assert main([*argv, "--seed", "3", "--seeds", "2", "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert set(report) == {"dataset", "users", "test_users", "queries", "seeds", "methods"}
    assert (report["dataset"], report["users"], report["test_users"], report["queries"]) == ("orders.csv", 3, 3, 6)
    assert report["seeds"] == [3, 4]
    # Every shopper is a test shopper whatever the seed, so both seeds give the hand figures.
    assert_baselines_match_hand_figures(report["methods"])
    printed = capsys.readouterr()
    table = printed.out.splitlines()
    assert table[0].startswith("orders.csv: 3 users, 3 test users, 6 queries")
    assert [line.split()[0] for line in table[2:]] == list(METHODS)
    assert float(table[2].split()[1]) == pytest.approx(EXPECTED["plain"]["ndcg@10"], abs=1e-4)
    assert "seed 4: 6 queries" in printed.err  # progress goes to stderr


def test_an_instacart_catalog_folder_gives_the_same_report(store, tmp_path, capsys):
    orders, _ = store
    folder = tmp_path / "instacart"
    folder.mkdir()
    (folder / "aisles.csv").write_text("aisle_id,aisle\n1,milk\n2,bread\n")
    (folder / "departments.csv").write_text("department_id,department\n1,dairy\n2,bakery\n")
    products = ["product_id,product_name,aisle_id,department_id"]
    for row in CATALOG_CSV.splitlines()[1:]:
        pid, name, category, _ = row.split(",")
        products.append(f"{pid},{name},{1 if category == 'milk' else 2},{1 if category == 'milk' else 2}")
    (folder / "products.csv").write_text("\n".join(products) + "\n")
    out = tmp_path / "report.json"
    argv = ["evaluate-search", "--orders", str(orders), "--catalog", str(folder), "--test-fraction", "1"]
    assert main([*argv, "--json", str(out)]) == 0
    assert_baselines_match_hand_figures(json.loads(out.read_text())["methods"])


# --- bad input ---------------------------------------------------------------------------------------------------


def evaluate_search(capsys, orders, catalog) -> tuple[int, str]:
    code = main(["evaluate-search", "--orders", str(orders), "--catalog", str(catalog)])
    return code, capsys.readouterr().err


def test_an_order_file_without_product_ids_exits_2(store, tmp_path, capsys):
    _, catalog = store
    orders = tmp_path / "bad.csv"
    orders.write_text("user_id,order_id,order_number,sku\nalice,o1,1,m1\n")
    code, err = evaluate_search(capsys, orders, catalog)
    assert code == 2
    assert err.startswith("error: ")
    assert "missing column(s) product_id" in err


def test_an_order_row_with_a_bad_number_exits_2_naming_the_line(store, tmp_path, capsys):
    _, catalog = store
    orders = tmp_path / "bad.csv"
    orders.write_text("user_id,order_id,order_number,product_id\nalice,o1,1,m1\nalice,o2,second,m1\n")
    code, err = evaluate_search(capsys, orders, catalog)
    assert code == 2
    assert f"error: {orders}, line 3:" in err


def test_orders_without_a_shopper_of_two_orders_exit_2(store, tmp_path, capsys):
    _, catalog = store
    orders = tmp_path / "single.csv"
    orders.write_text("user_id,order_id,order_number,product_id\nalice,o1,1,m1\nbob,o2,1,m2\n")
    code, err = evaluate_search(capsys, orders, catalog)
    assert code == 2
    assert "no test users" in err


def test_a_catalog_folder_without_aisles_exits_2(store, tmp_path, capsys):
    orders, _ = store
    folder = tmp_path / "instacart"
    folder.mkdir()
    (folder / "products.csv").write_text("product_id,product_name,aisle_id,department_id\nm1,Whole Milk,1,1\n")
    (folder / "departments.csv").write_text("department_id,department\n1,dairy\n")
    code, err = evaluate_search(capsys, orders, folder)
    assert code == 2
    assert err.startswith("error: ")
    assert "lacks aisles.csv" in err


def test_a_catalog_row_without_a_category_exits_2_naming_the_row(store, tmp_path, capsys):
    orders, _ = store
    catalog = tmp_path / "catalog.csv"
    catalog.write_text("id,name,category,department\nm1,Whole Milk,milk,dairy\nm2,Skim Milk,,dairy\n")
    code, err = evaluate_search(capsys, orders, catalog)
    assert code == 2
    assert "line 3: category" in err


def test_a_missing_order_file_exits_2(store, tmp_path, capsys):
    _, catalog = store
    code, err = evaluate_search(capsys, tmp_path / "nowhere.csv", catalog)
    assert code == 2
    assert "nowhere.csv: no such file" in err
