"""The scheduled jobs on every warehouse (DuckDB running the BigQuery SQL through sqlglot; the
BigQuery adapter on bqemulator), checked against independent computations, real Instacart
shoppers included; and the loop back to search through a published features snapshot."""

from __future__ import annotations

import json
import time
from collections import defaultdict
from datetime import UTC, datetime, timedelta

import pytest

from shared.adapters.archive.local import LocalFolderArchive
from shared.adapters.feature_store.snapshot import CURRENT, SnapshotFeatureStore
from shared.adapters.warehouse.duckdb import DuckDbWarehouse
from shared.datasets import instacart_sample, order_records, purchase_events, read_order_rows
from shared.domain.catalog import Catalog
from shared.domain.context import WEIGHTS
from shared.domain.events import Interaction
from shared.domain.memory import cycle_of, distinct_days
from shared.domain.nextbasket import Basket, Params, recommend_from, usual_scores
from shared.domain.pipeline import warehouse_rows
from shared.domain.rules import ContextRules
from shared.ports.warehouse import WarehouseUnavailable
from shared.services.features import FeaturePublisher, version_name
from shared.services.jobs import RUN_ORDER, JobRunner, window_end
from tests.conftest import SMALL_CATALOG
from tests.emulator_fixtures import new_warehouse

T0 = datetime(2026, 1, 5, 9, tzinfo=UTC)
NOW = T0 + timedelta(days=70)


def purchase(user: str, order: int, product: str, day: float, qty: int = 1, weather: str | None = None) -> Interaction:
    context = {"order_id": f"{user}-{order}"} | ({"weather": {"condition": weather}} if weather else {})
    return Interaction(
        event_id=f"{user}-{order}-{product}",
        event_type="purchase",
        user_id=user,
        product_id=product,
        quantity=qty,
        price={p.id: p.price for p in SMALL_CATALOG}[product],
        timestamp=T0 + timedelta(days=day),
        context=context,
    )


def store_history() -> list[Interaction]:
    """ann buys oat milk weekly with oat yogurt (vegan); bob takes 2 whole milks every 10 days
    with chips; cat and dan shop once."""
    events = []
    for n in range(8):
        events += [purchase("ann", n, "oat-milk", 7 * n), purchase("ann", n, "oat-yogurt", 7 * n)]
        if n % 2:
            events.append(purchase("ann", n, "greek-yogurt", 7 * n))
    for n in range(6):
        events += [purchase("bob", n, "whole-milk", 10 * n, qty=2), purchase("bob", n, "original-chips", 10 * n)]
    events += [purchase("cat", 0, "oat-milk", 3), purchase("cat", 0, "spicy-chips", 3)]
    events += [purchase("dan", 0, "oat-milk", 5), purchase("dan", 0, "oat-yogurt", 5)]
    return events


@pytest.fixture(params=["duckdb", "bigquery"])
def warehouse(request, tmp_path, rules):
    store = new_warehouse(request, tmp_path, request.param, "jobs")
    store.insert(warehouse_rows(store_history(), Catalog(SMALL_CATALOG), rules, NOW))
    yield store
    store.close()


def table(warehouse, name: str, key: tuple[str, ...]) -> dict[tuple, dict]:
    return {tuple(row[k] for k in key): row for row in warehouse.query(f"SELECT * FROM {name}")}


def test_hourly_and_daily_jobs_compute_the_shopper_features(warehouse):
    runner = JobRunner(warehouse, clock=lambda: NOW)
    hourly, daily = runner.run("hourly"), runner.run("daily")
    assert [j["status"] for j in hourly["jobs"]] == ["done"] * 9
    assert daily["jobs"][0]["status"] == "done"  # order_lines again: the daily window ends at midnight

    cycles = table(warehouse, "reorder_predictions", ("user_id", "product_id"))
    assert cycles[("ann", "oat-milk")]["cycle_days"] == 7 and cycles[("bob", "whole-milk")]["cycle_days"] == 10
    assert cycles[("ann", "greek-yogurt")]["cycle_days"] == 14
    assert str(cycles[("ann", "oat-milk")]["next_expected"])[:10] == str((T0 + timedelta(days=56)).date())
    assert ("cat", "oat-milk") not in cycles  # bought once: no cycle

    quantities = table(warehouse, "quantity_predictions", ("user_id", "product_id"))
    assert quantities[("bob", "whole-milk")]["suggested_quantity"] == 2  # the bulk-buyer scenario
    assert quantities[("ann", "oat-milk")]["suggested_quantity"] == 1

    diets = table(warehouse, "dietary_patterns", ("user_id", "attribute"))
    assert {("ann", "vegan"), ("ann", "dairy-free"), ("bob", "organic")} <= set(diets)
    assert ("bob", "vegan") not in diets and not any(user == "cat" for user, _ in diets)  # cat: 2 lines < 3

    segments = table(warehouse, "user_segments", ("user_id",))
    assert segments[("cat",)]["segment"] == "new" and segments[("bob",)]["bulk_buyer"]

    pairs = table(warehouse, "product_associations", ("product_id", "other_id"))
    # 16 baskets; oat-yogurt is in 9 (ann's 8, dan's), greek-yogurt in 4 of them
    together = pairs[("oat-yogurt", "greek-yogurt")]
    assert together["orders"] == 4 and together["confidence"] == pytest.approx(4 / 9)
    assert together["lift"] == pytest.approx((4 / 9) / (4 / 16))
    assert together["support"] == pytest.approx(4 / 16)

    discoveries = table(warehouse, "discovery_items", ("user_id", "product_id"))
    assert ("cat", "oat-yogurt") in discoveries  # both oat-milk buyers (ann, dan) buy oat yogurt; cat never did
    assert ("ann", "oat-milk") not in discoveries  # never what they already buy


def test_a_window_runs_once_and_a_crashed_run_resumes(warehouse):
    runner = JobRunner(warehouse, clock=lambda: NOW)
    first = runner.run("hourly")
    before = table(warehouse, "reorder_predictions", ("user_id", "product_id"))
    again = runner.run("hourly")
    assert {j["status"] for j in again["jobs"]} == {"skipped"}
    forced = runner.run("hourly", force=True)
    assert {j["status"] for j in forced["jobs"]} == {"done"}
    assert table(warehouse, "reorder_predictions", ("user_id", "product_id")) == before  # same window, same table
    assert first["window_end"] == (NOW.replace(minute=0, second=0, microsecond=0)).isoformat()

    later = NOW + timedelta(hours=1)
    crashing = JobRunner(FailingOn(warehouse, "CREATE OR REPLACE TABLE user_segments"), clock=lambda: later)
    with pytest.raises(WarehouseUnavailable):
        crashing.run("hourly")
    resumed = JobRunner(warehouse, clock=lambda: later).run("hourly")
    status = {j["job"]: j["status"] for j in resumed["jobs"]}
    assert status["order_lines"] == status["product_associations"] == "skipped"  # done before the crash
    assert status["user_segments"] == status["dietary_patterns"] == "done"


def test_a_crashed_run_rebuilds_the_shared_table_the_other_schedule_built_meanwhile(warehouse):
    crashing = JobRunner(FailingOn(warehouse, "CREATE OR REPLACE TABLE user_segments"), clock=lambda: NOW)
    with pytest.raises(WarehouseUnavailable):
        crashing.run("hourly")  # order_lines and product_associations are done for 09:00
    runner = JobRunner(warehouse, clock=lambda: NOW)
    runner.run("daily")  # order_lines now holds the lines before midnight
    status = {j["job"]: j["status"] for j in runner.run("hourly")["jobs"]}
    assert status["order_lines"] == "done" and status["product_associations"] == "skipped"  # read before the crash
    assert status["user_segments"] == "done"
    assert {j["status"] for j in runner.run("hourly")["jobs"]} == {"skipped"}  # and then it settles


def test_a_job_runs_table_from_before_schedules_is_migrated(warehouse):
    columns = "job STRING, window_end TIMESTAMP, output_rows INT64, seconds FLOAT64, finished_at TIMESTAMP"
    warehouse.query(f"CREATE TABLE job_runs ({columns})")  # as a var/ from before has it
    warehouse.query(
        "INSERT INTO job_runs (job, window_end, output_rows, seconds, finished_at) "
        "VALUES ('order_lines', @end, 3, 0.1, @end)",
        {"end": window_end("hourly", NOW)},
    )
    runner = JobRunner(warehouse, clock=lambda: NOW)
    first = [runner.run(schedule) for schedule in ("hourly", "daily")]
    assert first[0]["jobs"][0]["status"] == "done"  # the old row is no schedule's: its window runs once more
    again = [runner.run(schedule) for schedule in ("hourly", "daily")]
    assert {j["status"] for summary in again for j in summary["jobs"]} == {"skipped"}
    schedules = {row["schedule"] for row in warehouse.query("SELECT schedule FROM job_runs WHERE job = 'order_lines'")}
    assert schedules == {None, "hourly", "daily"}


class FailingOn:
    """The warehouse, failing the statement that starts with `prefix` (a crash mid-run)."""

    def __init__(self, warehouse, prefix: str) -> None:
        self.warehouse, self.prefix = warehouse, prefix

    def query(self, sql, params=None):
        if sql.startswith(self.prefix):
            raise WarehouseUnavailable("injected failure")
        return self.warehouse.query(sql, params)

    def replace_table(self, *args):
        return self.warehouse.replace_table(*args)


def test_next_basket_job_streams_the_same_lists_as_the_recommender(warehouse):
    JobRunner(warehouse, clock=lambda: NOW, chunk_users=1, params=Params()).run("daily")  # a shopper per chunk
    lists: dict[str, list[str]] = defaultdict(list)
    for row in sorted(warehouse.query("SELECT * FROM next_basket"), key=lambda r: r["position"]):
        lists[row["user_id"]].append(row["product_id"])
    histories: dict[str, list[Basket]] = defaultdict(list)
    by_order: dict[str, list[Interaction]] = defaultdict(list)
    for event in store_history():
        by_order[event.context.order_id].append(event)  # type: ignore[attr-defined]
    for events in sorted(by_order.values(), key=lambda es: es[0].timestamp):
        day = events[0].timestamp.timestamp() / 86_400
        histories[events[0].user_id].append(Basket(tuple(sorted(e.product_id or "" for e in events)), day))
    profiles = {user: usual_scores(h, Params()) for user, h in histories.items()}
    popular = ["oat-milk", "oat-yogurt", "original-chips", "whole-milk", "greek-yogurt", "spicy-chips"]  # by orders
    expected = dict(recommend_from(profiles, sorted(profiles), 20, popular))
    assert dict(lists) == expected
    assert lists["ann"][:2] == ["oat-milk", "oat-yogurt"]


def test_reorder_cycles_on_real_instacart_shoppers_match_graph_memorys_computation(tmp_path, rules):
    rows = list(read_order_rows(instacart_sample()))
    users = sorted({r.user_id for r in rows}, key=int)[:15]
    orders = order_records(r for r in rows if r.user_id in set(users))
    warehouse = DuckDbWarehouse(tmp_path / "instacart.duckdb")
    events = [e for order in orders for e in purchase_events(order)]
    warehouse.insert(warehouse_rows(events, Catalog([]), rules, datetime.now(UTC)))
    end = max(o.placed_at for o in orders) + timedelta(days=1)
    JobRunner(warehouse, clock=lambda: end).run("hourly", only=["order_lines", "reorder_predictions"])
    got = {
        (r["user_id"], r["product_id"]): (float(r["cycle_days"]), round(float(r["confidence"]), 3))
        for r in warehouse.query("SELECT * FROM reorder_predictions")
    }
    expected = {}
    bought: dict[tuple[str, str], list] = defaultdict(list)
    for order in orders:
        for line in order.lines:
            bought[(order.user_id, line.product_id)].append((order.placed_at, line.quantity, order.order_id))
    for key, purchases in bought.items():
        cycle = cycle_of(distinct_days(sorted(purchases)))
        if cycle is not None:
            expected[key] = cycle
    assert len(expected) > 200
    assert got == expected
    warehouse.close()


def searched(user: str, query: str, day: float) -> Interaction:
    return Interaction(
        event_id=f"{user}-{query.strip().replace(' ', '_')}-{day}",
        event_type="search",
        user_id=user,
        timestamp=T0 + timedelta(days=day),
        context={"search_query": query},
    )


def test_store_queries_need_five_shoppers_and_each_shopper_keeps_their_own(warehouse, rules):
    events = [searched(f"s{n}", " Oat Milk" if n % 2 else "oat milk", 60 + n) for n in range(5)]
    events += [searched("s0", "my secret recipe", 66), searched("s0", "oat milk", 50)]
    warehouse.insert(warehouse_rows(events, Catalog(SMALL_CATALOG), rules, NOW))
    JobRunner(warehouse, clock=lambda: NOW).run("daily")
    store = warehouse.query("SELECT query, searches, shoppers FROM popular_queries")
    assert [(r["query"], r["searches"], r["shoppers"]) for r in store] == [("oat milk", 6, 5)]
    own = warehouse.query("SELECT query FROM user_queries WHERE user_id = 's0' ORDER BY last_searched DESC")
    assert [r["query"] for r in own] == ["my secret recipe", "oat milk"]
    warehouse.close()


def test_context_patterns_learn_category_lift_by_moment_in_the_stores_time_zone(warehouse, rules):
    """xena buys two milks on 6 rainy Monday nights and two chips on 4 Friday evenings, New York time
    (04:00 and 00:00 UTC): her own lifts by hand, with 20 prior lines of her usual shares (milk 12/20,
    chips 8/20); the store's by weekday and part of the day, season and weather."""
    night = [purchase("xena", n, p, 7 * n, weather="rain") for n in range(6) for p in ("whole-milk", "skim-milk")]
    evening = [purchase("xena", 10 + n, p, 4.625 + 7 * n) for n in range(4) for p in ("original-chips", "spicy-chips")]
    warehouse.insert(warehouse_rows(night + evening, Catalog(SMALL_CATALOG), rules, NOW))
    runner = JobRunner(warehouse, clock=lambda: NOW, context=ContextRules(timezone="America/New_York"))
    runner.run("daily", only=["order_lines", "context_patterns"])

    mine = warehouse.query("SELECT slot, category, lift FROM context_patterns WHERE user_id = 'xena'")
    milk, chips = (12 + 20 * 0.6) / (12 + 20) / 0.6, (8 + 20 * 0.4) / (8 + 20) / 0.4  # 1.25, 1.4286
    assert {(r["slot"], r["category"]): r["lift"] for r in mine} == pytest.approx(
        {
            ("part:night", "milk"): milk,
            ("weekday:1", "milk"): milk,
            ("part:evening", "chips"): round(chips, 3),
            ("weekday:5", "chips"): round(chips, 3),
        }
    )
    store = {
        (r["slot"], r["category"]): r["lift"]
        for r in warehouse.query("SELECT slot, category, lift FROM context_patterns WHERE user_id IS NULL")
    }
    assert store[("when:5:evening", "chips")] > 1  # only xena shops on Friday evenings: chips
    assert store[("weather:rain", "milk")] > 1 and ("weather:rain", "chips") not in store  # rain: milk only
    assert all(not slot.startswith(("part:", "weekday:")) for slot, _ in store)  # the store's slots are its own
    [weight] = warehouse.query("SELECT weight, tuning FROM context_weight")
    assert weight["weight"] in WEIGHTS and json.loads(weight["tuning"])["shoppers"] >= 1


def test_trending_products_are_those_rising_over_their_weekly_rate(warehouse, rules):
    recent = NOW - timedelta(days=3) - T0  # the last 7 days of the window; the 28 before are the baseline
    days = recent.total_seconds() / 86_400
    rising = [purchase(f"r{n}", 0, "spicy-chips", days) for n in range(4)]  # 4 now, none before: 4 / 1
    steady = [purchase(f"s{n}", 0, "skim-milk", days) for n in range(4)]  # 4 now, 8 before: 4 / (8 / 4 + 1)
    steady += [purchase(f"s{n}", 1, "skim-milk", days - 10 - n) for n in range(8)]
    few = [purchase(f"f{n}", 0, "greek-yogurt", days) for n in range(2)]  # under min_recent (3)
    warehouse.insert(warehouse_rows(rising + steady + few, Catalog(SMALL_CATALOG), rules, NOW))
    JobRunner(warehouse, clock=lambda: NOW).run("hourly")
    rows = warehouse.query("SELECT product_id, recent, prior, trend FROM trending_products ORDER BY trend DESC")
    assert [(r["product_id"], r["recent"], r["prior"]) for r in rows] == [("spicy-chips", 4, 0), ("skim-milk", 4, 8)]
    assert [r["trend"] for r in rows] == pytest.approx([4.0, 4 / 3])
    warehouse.close()


@pytest.mark.parametrize("warehouse", ["duckdb"], indirect=True)  # publishing is the same on any warehouse
def test_published_features_reach_search(tmp_path, warehouse, rules):
    store = SnapshotFeatureStore(LocalFolderArchive(tmp_path / "objects"), tmp_path / "cache", refresh_s=0)
    runner = JobRunner(warehouse, after_run=FeaturePublisher(warehouse, store, page=1), clock=lambda: NOW)
    summary = runner.run("daily")
    runner.run("hourly")
    assert summary["features"]["user"] == 4
    bob = store.user("bob")
    assert (
        bob is not None
        and bob["quantities"] == {"whole-milk": 2}
        and bob["usual"][0] in {"whole-milk", "original-chips"}
    )
    ann = store.user("ann")
    assert ann is not None and "vegan" in ann["dietary"] and ann["reorder"]["oat-milk"]["cycle_days"] == 7
    assert store.product("oat-milk") is not None
    assert ann["bought"] == ["greek-yogurt", "oat-milk", "oat-yogurt"] and ann["next_basket"][:2] == ann["usual"][:2]
    assert store.store("trending") is None  # nothing ordered in the window's last week
    context = store.store("context")  # the store's lifts by moment and their tuned weight, merged
    assert context is not None and context["lifts"] and context["weight"] in WEIGHTS and "ndcg@10" in context["tuning"]


def test_snapshot_versions_switch_and_merge_sources(tmp_path):
    store = SnapshotFeatureStore(LocalFolderArchive(tmp_path / "objects"), tmp_path / "cache", refresh_s=0)
    assert store.user("ann") is None and store.version() is None
    store.publish("v1", [("user", [("ann", {"usual": ["a"]})]), ("user", [("ann", {"dietary": ["vegan"]})])])
    assert store.user("ann") == {"usual": ["a"], "dietary": ["vegan"]}  # sources merge per id
    store.publish("v2", [("user", [("bob", {"usual": ["b"]})])])
    assert store.version() == "v2" and store.user("ann") is None and store.user("bob") == {"usual": ["b"]}


def test_another_instance_picks_up_a_new_version_in_the_background(tmp_path):
    objects = LocalFolderArchive(tmp_path / "objects")
    SnapshotFeatureStore(objects, tmp_path / "publisher").publish("v1", [("user", [("ann", {"usual": ["a"]})])])
    reader = SnapshotFeatureStore(objects, tmp_path / "reader", refresh_s=0)
    deadline = time.monotonic() + 10
    while reader.version() != "v1" and time.monotonic() < deadline:  # each call looks again, in the background
        time.sleep(0.01)
    assert reader.user("ann") == {"usual": ["a"]}
    SnapshotFeatureStore(objects, tmp_path / "old").publish("v0", [("user", [("ann", {"usual": ["old"]})])])
    time.sleep(0.2)
    assert reader.version() == "v1" and reader.user("ann") == {"usual": ["a"]}  # never back to an older one


def test_features_are_published_once_a_window_and_again_after_a_failed_publication(warehouse):
    published: list[datetime] = []

    def publish(end: datetime) -> dict:
        published.append(end)
        if len(published) == 1:
            raise WarehouseUnavailable("injected: the run stops between its last job and the publication")
        return {"user": 4, "product": 5}

    runner = JobRunner(warehouse, after_run=publish, clock=lambda: NOW)
    with pytest.raises(WarehouseUnavailable):
        runner.run("hourly")
    again = runner.run("hourly")  # every job is done: only the publication is left
    assert {j["status"] for j in again["jobs"]} == {"skipped"} and again["features"] == {"user": 4, "product": 5}
    third = runner.run("hourly")
    assert "features" not in third and len(published) == 2  # nothing new: nothing republished


@pytest.mark.parametrize("order", [("hourly", "daily"), RUN_ORDER])
def test_both_schedules_settle_and_the_served_snapshot_never_moves_back(tmp_path, warehouse, order):
    """The local scheduler asks both schedules every minute (with a fixed clock here): each window
    runs once per schedule and is published once, and CURRENT names the newest version (empty
    snapshots: the documents are the next test's; bqemulator fails on their ARRAY_AGG(STRUCT(...)))."""
    archive = LocalFolderArchive(tmp_path / "objects")
    store = SnapshotFeatureStore(archive, tmp_path / "cache", refresh_s=0)
    now = [NOW]
    runner = JobRunner(warehouse, after_run=lambda end: store.publish(version_name(end), []), clock=lambda: now[0])
    for now[0] in (NOW, NOW + timedelta(hours=1), NOW + timedelta(hours=15), NOW + timedelta(hours=16, minutes=5)):
        newest = version_name(window_end("hourly", now[0]))  # never before the daily window's end
        for schedule in order:
            runner.run(schedule)
            assert archive.get(CURRENT) == (store.version() or "").encode()
        assert store.version() == newest
        stored = archive.list("features/")
        again = [runner.run(schedule) for schedule in order]  # the next minute, in the same hour
        assert {j["status"] for summary in again for j in summary["jobs"]} == {"skipped"}
        assert not any("features" in summary for summary in again)
        assert archive.list("features/") == stored and store.version() == newest  # nothing written


@pytest.mark.parametrize("warehouse", ["duckdb"], indirect=True)  # publishing is the same on any warehouse
def test_the_local_schedulers_first_round_serves_the_daily_features(tmp_path, warehouse):
    store = SnapshotFeatureStore(LocalFolderArchive(tmp_path / "objects"), tmp_path / "cache", refresh_s=0)
    runner = JobRunner(warehouse, after_run=FeaturePublisher(warehouse, store), clock=lambda: NOW)
    for schedule in RUN_ORDER:
        runner.run(schedule)
    product = store.product("oat-yogurt")  # the hourly version, the newer, holds the daily tables too
    assert product is not None and "similar" in product and "goes_with" in product


def test_an_older_publication_never_moves_current_back(tmp_path):
    archive = LocalFolderArchive(tmp_path / "objects")
    newer = SnapshotFeatureStore(archive, tmp_path / "newer", refresh_s=0)
    newer.publish("v2", [("user", [("ann", {"usual": ["new"]})])])
    older = SnapshotFeatureStore(archive, tmp_path / "older", refresh_s=0)
    older.publish("v1", [("user", [("ann", {"usual": ["old"]})])])
    assert archive.get(CURRENT) == b"v2"
    assert older.version() == "v2" and older.user("ann") == {"usual": ["new"]}  # it serves the current one
    newer.publish("v1", [("user", [("ann", {"usual": ["old"]})])])
    assert newer.version() == "v2" and newer.user("ann") == {"usual": ["new"]}  # nor does its own instance
    assert [o.name for o in archive.list("features/")] == [CURRENT, "features/v2.sqlite3"]  # v1 not even stored
    newer.publish("v2", [("user", [("ann", {"usual": ["again"]})])])  # the same version again: a forced re-run
    assert newer.user("ann") == {"usual": ["again"]}


class WritesCurrentLate(LocalFolderArchive):
    """A folder archive where `meanwhile` runs just before the first write of CURRENT: another
    publisher gets in between this one's look at CURRENT and its write."""

    def __init__(self, root, meanwhile) -> None:
        super().__init__(root)
        self.meanwhile = meanwhile

    def put(self, name: str, data: bytes, if_absent: bool = False) -> bool:
        if name == CURRENT and self.meanwhile is not None:
            meanwhile, self.meanwhile = self.meanwhile, None
            meanwhile()
        return super().put(name, data, if_absent)


def test_of_two_racing_publishers_the_newer_wins(tmp_path):
    archive = LocalFolderArchive(tmp_path / "objects")
    newer = SnapshotFeatureStore(archive, tmp_path / "newer", refresh_s=0)
    older = SnapshotFeatureStore(
        WritesCurrentLate(tmp_path / "objects", lambda: newer.publish("v2", [("user", [("ann", {"usual": ["b"]})])])),
        tmp_path / "older",
        refresh_s=0,
    )
    older.publish("v1", [("user", [("ann", {"usual": ["a"]})])])
    assert archive.get(CURRENT) == b"v2"
    assert older.version() == newer.version() == "v2" and older.user("ann") == {"usual": ["b"]}


# bqemulator fails on the documents' ARRAY_AGG(STRUCT(...)) (see above); the naming is the same on any warehouse.
@pytest.mark.parametrize("warehouse", ["duckdb"], indirect=True)
def test_a_window_published_after_an_erasure_is_served(tmp_path, warehouse):
    """The deletion queue republishes the job tables without the shoppers being erased; a window
    that ends before that erasure but is published after it must still become the served version."""
    store = SnapshotFeatureStore(LocalFolderArchive(tmp_path / "objects"), tmp_path / "cache", refresh_s=0)
    publisher = FeaturePublisher(warehouse, store)
    now = [NOW]
    runner = JobRunner(warehouse, after_run=lambda end: store.publish(version_name(end), []), clock=lambda: now[0])
    runner.run("hourly")
    first = version_name(window_end("hourly", NOW))
    erased = publisher.republish(NOW + timedelta(minutes=61))  # the queue runs before the next hourly window
    assert erased["version"] == f"{first}-erased-{version_name(NOW + timedelta(minutes=61))}"
    assert store.version() == erased["version"]  # it replaces the version it rebuilt
    now[0] = NOW + timedelta(minutes=62)
    runner.run("hourly")
    assert store.version() == version_name(window_end("hourly", now[0]))  # the next window still wins
