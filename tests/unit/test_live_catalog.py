"""The live catalog: changes applied whole, versions served in order, stock honoured by both doors."""

from __future__ import annotations

import gc
import time
import weakref

import bm25s
import numpy as np
import pytest

from shared.adapters.catalog.sqlite import SqliteCatalogStore
from shared.adapters.product_search.bm25s import Bm25sProductSearch, VectorBM25, _text
from shared.adapters.profile_store.memory import MemoryProfileStore
from shared.domain.catalog import Catalog, CatalogChange, CatalogError, Product, ProductPatch
from shared.domain.catalog_generator import generate_catalog
from shared.domain.engine import ProfileEngine
from shared.domain.merchandising import parse_merchandising
from shared.domain.ranker import FeatureTable, Ranker
from shared.domain.search import RankRequest, SearchRequest
from shared.ports.catalog_store import CatalogUnavailable
from shared.services.catalog import LiveCatalog, Shelf
from shared.services.search import SearchService
from shared.services.tracking import TrackingService
from tests.conftest import SMALL_CATALOG, product
from tests.unit.test_search_service import NOW, click, make

BY_ID = {p.id: p for p in SMALL_CATALOG}


# -- the domain: a change applies whole or not at all -------------------------------------------
def test_a_patch_changes_only_the_fields_it_gives():
    patched = ProductPatch(id="oat-milk", price=3.99, in_stock=False).applied_to(BY_ID["oat-milk"])
    assert (patched.price, patched.in_stock) == (3.99, False)
    assert patched.model_dump(exclude={"price", "in_stock"}) == BY_ID["oat-milk"].model_dump(
        exclude={"price", "in_stock"}
    )
    assert ProductPatch(id="oat-milk", brand=None).applied_to(BY_ID["oat-milk"]).brand is None  # null clears


@pytest.mark.parametrize("fields", [{"name": None}, {"in_stock": None}, {}], ids=["clear-name", "clear-stock", "none"])
def test_a_patch_that_would_break_a_product_is_refused(fields):
    with pytest.raises(ValueError):
        ProductPatch(id="oat-milk", **fields)


def test_a_change_patching_a_missing_product_names_it_and_changes_nothing():
    change = CatalogChange(
        upserts=(product("new", "New Milk", "Acme", "milk"),),
        patches=(ProductPatch(id="oat-milk", price=1.0), ProductPatch(id="gone", price=2.0)),
    )
    with pytest.raises(CatalogError) as refused:
        change.applied_to(dict(BY_ID))
    assert [str(e) for e in refused.value.errors] == ["line 2: id: no product 'gone' to patch"]
    after = CatalogChange(deletes=("skim-milk", "never-there")).applied_to(dict(BY_ID))
    assert "skim-milk" not in after and len(after) == len(BY_ID) - 1


# -- the service: versions built in the background, served whole and in order ---------------------
def live_on(store: SqliteCatalogStore, rules, initial: Catalog | None = None, **kwargs) -> LiveCatalog:
    engine = ProfileEngine(rules, initial or Catalog([]))
    return LiveCatalog(lambda: store, Bm25sProductSearch, initial or Catalog([]), adopt=[engine.adopt], **kwargs)


def test_a_committed_change_is_served_as_the_next_version(tmp_path, rules):
    store = SqliteCatalogStore(tmp_path / "catalog.sqlite3")
    store.replace(SMALL_CATALOG)
    live = live_on(store, rules)
    live.refresh()
    assert live.catalog.version == 1 and len(live.catalog) == len(SMALL_CATALOG)
    version = live.commit(CatalogChange(patches=(ProductPatch(id="oat-milk", price=9.0),), deletes=("skim-milk",)))
    live.refresh()
    served = live.catalog
    assert served.version == version == 2
    assert served.get("oat-milk").price == 9.0 and served.get("skim-milk") is None


def test_the_delta_path_serves_what_a_whole_load_serves(tmp_path, rules):
    store = SqliteCatalogStore(tmp_path / "catalog.sqlite3")
    store.replace(generate_catalog(300))
    follower = live_on(store, rules)
    follower.refresh()  # version 1, whole
    rng = np.random.default_rng(5)
    for round_ in range(5):
        served = list(follower.catalog.products)
        picks = rng.choice(len(served), 20, replace=False)
        store.commit(
            CatalogChange(
                upserts=tuple(served[i].model_copy(update={"id": f"new-{round_}-{i}"}) for i in picks[:5]),
                patches=tuple(ProductPatch(id=served[i].id, in_stock=False) for i in picks[5:15]),
                deletes=tuple(served[i].id for i in picks[15:]),
            )
        )
        follower.refresh()  # by the changes since the version it serves
    whole = store.load()
    assert follower.catalog.version == whole.version == 6
    assert {p.id: p for p in follower.catalog.products} == {p.id: p for p in whole.products}


def test_the_rows_a_version_holds_from_the_one_before_are_worked_out_once():
    first = Catalog(SMALL_CATALOG)
    second = Catalog([*first.products[1:], product("new", "New Milk", "Acme", "milk")], previous=first)
    rows = second.rows_in(first)
    assert rows is second.rows_in(first) and not rows.flags.writeable  # the index and ranker share it
    assert rows.tolist() == [*range(1, len(SMALL_CATALOG)), -1]
    copies = Catalog([p.model_copy() for p in SMALL_CATALOG])  # equal products, other objects: none held
    assert second.rows_in(copies).tolist() == [-1] * len(SMALL_CATALOG)


@pytest.mark.parametrize("deleting", [False, True])
def test_an_amended_version_works_out_what_a_fresh_one_does(deleting):
    served = Catalog(generate_catalog(400), version=1)
    rng = np.random.default_rng(11)
    rows = rng.choice(len(served), 40, replace=False).tolist()
    repriced = [
        served.products[r].model_copy(update={"price": round((served.products[r].price or 1) * 1.7, 2)})
        for r in rows[:20]
    ]
    moved = [served.products[r].model_copy(update={"category": "Frozen Pies"}) for r in rows[20:25]]
    added = [served.products[r].model_copy(update={"id": f"new-{r}", "price": 0.5}) for r in rows[25:30]]
    deleted = [served.products[r].id for r in rows[30:]] if deleting else []
    twice = [repriced[0].model_copy(update={"price": 99.0})]  # the last of an id given twice wins
    amended = Catalog.amended(served, [*repriced, *moved, *added, *twice], deleted, version=2)
    fresh = Catalog(amended.products, version=2)
    assert {p.id for p in amended.products} == {p.id for p in served.products} - set(deleted) | {p.id for p in added}
    assert amended.get(repriced[0].id).price == 99.0
    assert amended.index == fresh.index
    for p in amended.products:
        assert amended.keys(p.id) == fresh.keys(p.id)
        assert amended.price_ratio_of(p, p.price) == pytest.approx(fresh.price_ratio_of(p, p.price), nan_ok=True)
    np.testing.assert_allclose(amended.price_ratios, fresh.price_ratios, equal_nan=True)
    names = amended.category_names
    assert [names[c] for c in amended.category_codes] == [p.category.lower() for p in amended.products]
    assert not deleting or (amended.rows_in(served) >= 0).sum() == len(served) - 25 - 10  # untouched rows are held


def test_a_replaced_version_is_freed_by_its_last_reference_alone(tmp_path):
    """Each version served is frozen out of the collector's passes (shared/pacing.py), so one that only
    a pass could free (a reference cycle anywhere in it) would never be freed."""
    from tests.conftest import installed_services

    services = installed_services(tmp_path)
    try:
        assert services.search.search(SearchRequest(query="milk"))["results"]  # the services hold a version
        started = [weakref.ref(o) for o in (services.live.shelf.catalog, services.live.shelf.products)]
        services.live.commit(CatalogChange(patches=(ProductPatch(id="oat-milk", price=2.0),)))
        services.live.refresh()  # a version built while serving, as every later one is
        assert [ref() for ref in started] == [None, None]  # nothing keeps the version it started with
        shelf = services.live.shelf
        ranker = services.search.ranker()
        built = [weakref.ref(o) for o in (shelf, shelf.catalog, shelf.products, ranker.table)]
        del shelf, ranker
        services.live.commit(CatalogChange(patches=(ProductPatch(id="oat-milk", price=3.0),)))
        was_enabled = gc.isenabled()
        gc.disable()
        try:
            services.live.refresh()
            assert [ref() for ref in built] == [None] * len(built)
        finally:
            if was_enabled:
                gc.enable()
        assert services.live.catalog.get("oat-milk").price == 3.0
    finally:
        services.close()
        from shared import bootstrap

        bootstrap.install(None)


def test_a_build_runs_no_collector_pass_and_freezes_what_it_built(tmp_path, rules):
    store = SqliteCatalogStore(tmp_path / "catalog.sqlite3")
    store.replace(generate_catalog(300))
    live = live_on(store, rules)
    passes: list[str] = []

    def seen(phase: str, info: dict) -> None:
        if phase == "start":
            passes.append("enabled" if gc.isenabled() else "by the build")

    frozen = gc.get_freeze_count()
    gc.callbacks.append(seen)
    try:
        live.refresh()
    finally:
        gc.callbacks.remove(seen)
    assert passes == ["by the build"]  # the one pass after the swap, none within
    assert gc.isenabled() and gc.get_freeze_count() > frozen + len(live.catalog)


def test_an_instance_never_moves_back_and_keeps_serving_when_the_store_fails(tmp_path, rules):
    store = SqliteCatalogStore(tmp_path / "catalog.sqlite3")
    store.replace(SMALL_CATALOG)
    store.commit(CatalogChange(deletes=("skim-milk",)))
    live = live_on(store, rules)
    live.refresh()
    assert live.catalog.version == 2

    class Older(SqliteCatalogStore):
        def latest(self):
            return 1

    older = Older(tmp_path / "catalog.sqlite3")
    live._store = older
    live.refresh()
    assert live.catalog.version == 2

    class Down(SqliteCatalogStore):
        def latest(self):
            raise CatalogUnavailable("store down")

    live._store = Down(tmp_path / "catalog.sqlite3")
    live.refresh()
    health = live.health()
    assert live.catalog.version == 2 and health["status"] == "degraded" and "store down" in health["store"]


def test_no_catalog_is_unhealthy_and_says_how_to_get_one(tmp_path, rules):
    live = live_on(SqliteCatalogStore(tmp_path / "catalog.sqlite3"), rules)
    live.refresh()
    health = live.health()
    assert health["status"] == "unhealthy" and "import-catalog" in health["reason"] and health["products"] == 0


def test_a_commit_is_picked_up_without_anyone_calling_refresh(tmp_path, rules):
    store = SqliteCatalogStore(tmp_path / "catalog.sqlite3")
    store.replace(SMALL_CATALOG)
    live = live_on(store, rules, refresh_s=3600)  # the period never passes in this test
    live.refresh()
    version = live.commit(CatalogChange(patches=(ProductPatch(id="oat-milk", in_stock=False),)))
    deadline = time.monotonic() + 10
    while live.catalog.version < version and time.monotonic() < deadline:
        time.sleep(0.01)
    assert live.catalog.version == version and live.catalog.get("oat-milk").in_stock is False


# -- stock on both doors ------------------------------------------------------------------------
def stocked(catalog_products, out_of_stock: set[str]) -> Catalog:
    return Catalog([p.model_copy(update={"in_stock": p.id not in out_of_stock}) for p in catalog_products])


def test_search_leaves_out_of_stock_products_out_unless_asked(rules):
    search, _ = make(rules, stocked(SMALL_CATALOG, {"oat-milk"}))
    shown = [r["product_id"] for r in search.search(SearchRequest(query="milk"))["results"]]
    assert "oat-milk" not in shown and "whole-milk" in shown
    asked = search.search(SearchRequest.model_validate({"query": "milk", "filters": {"include_out_of_stock": True}}))
    out = [r for r in asked["results"] if r["product_id"] == "oat-milk"]
    assert out and out[0]["in_stock"] is False


def test_rank_leaves_out_what_is_out_of_stock_and_says_so(rules):
    search, tracking = make(rules, stocked(SMALL_CATALOG, {"oat-milk"}))
    tracking.track([click("oat-milk")])
    items = [{"product_id": "whole-milk"}, {"product_id": "oat-milk"}, {"product_id": "gone", "in_stock": False}]
    answer = search.rank(RankRequest.model_validate({"user_id": "u", "items": items}))
    assert [r["product_id"] for r in answer["results"]] == ["whole-milk"]
    assert answer["filtered_out"] == ["oat-milk", "gone"]
    asked = search.rank(
        RankRequest.model_validate({"user_id": "u", "items": items, "filters": {"include_out_of_stock": True}})
    )
    assert sorted(r["product_id"] for r in asked["results"]) == ["gone", "oat-milk", "whole-milk"]


def test_a_pin_never_brings_in_an_out_of_stock_product(rules):
    catalog = stocked(SMALL_CATALOG, {"oat-milk"})
    rules_doc = {"rules": [{"id": "pin-oat", "kind": "pin", "query": "milk", "product_id": "oat-milk", "position": 0}]}
    merchandising = parse_merchandising(rules_doc, "test")
    from shared.domain.merchandising import apply

    engine = ProfileEngine(rules, catalog)
    search = SearchService(
        engine,
        Bm25sProductSearch(catalog),
        MemoryProfileStore(),
        clock=NOW.timestamp,
        merchandise=lambda q, s, results, limit, bring: apply(merchandising, q, results, limit, bring),
    )
    assert "oat-milk" not in [r["product_id"] for r in search.search(SearchRequest(query="milk"))["results"]]


# -- profiles across versions -------------------------------------------------------------------
def test_a_profile_built_before_a_catalog_knew_a_brand_reads_as_one_affinity_after(rules):
    engine = ProfileEngine(rules, Catalog(SMALL_CATALOG))
    store = MemoryProfileStore()
    tracking = TrackingService(engine, store)
    unknown = {"event_type": "click_product", "user_id": "u", "product_id": "new-bread", "product_brand": "Acme"}
    from shared.domain.events import Interaction

    tracking.track([Interaction.model_validate(unknown | {"event_id": "e1", "timestamp": NOW})])
    engine.adopt(Catalog([*SMALL_CATALOG, product("new-bread", "Acme Bread", "Acme", "bread", dept="bakery")]))
    tracking.track([Interaction.model_validate(unknown | {"event_id": "e2", "timestamp": NOW})])
    one = store.read("u", lambda p: engine.read(p, NOW.timestamp()))
    engine_then = ProfileEngine(rules, Catalog(SMALL_CATALOG))
    twice = MemoryProfileStore()
    TrackingService(engine_then, twice).track(
        [Interaction.model_validate(unknown | {"event_id": f"e{i}", "timestamp": NOW}) for i in (1, 2)]
    )
    expected = twice.read("u", lambda p: engine_then.read(p, NOW.timestamp()))
    assert one.scores["brand:acme"] == pytest.approx(expected.scores["brand:acme"])  # summed, not overwritten


def test_search_ranks_while_the_ranker_is_still_on_the_previous_version(rules, small_catalog):
    search, tracking = make(rules, small_catalog)
    tracking.track([click("oat-milk")])
    steady = search.search(SearchRequest(query="yogurt", user_id="u"))
    newer = Catalog(list(small_catalog.products), version=2)
    shelf = Shelf(newer, Bm25sProductSearch(newer))
    search.shelf = lambda: shelf
    search.ranker = lambda: Ranker(FeatureTable(small_catalog, rules.ranking))  # not swapped yet
    swapping = search.search(SearchRequest(query="yogurt", user_id="u"))
    assert swapping["personalization"]["applied"] is True
    assert [r["product_id"] for r in swapping["results"]] == [r["product_id"] for r in steady["results"]]


# -- the index ----------------------------------------------------------------------------------
def test_the_array_built_index_scores_as_bm25s_does():
    products = generate_catalog(2_000)
    search = Bm25sProductSearch(Catalog(products))
    corpus = [search._tokens(_text(p)) for p in products]
    theirs, ours = bm25s.BM25(b=0.3), VectorBM25(b=0.3)
    theirs.index(corpus, show_progress=False)
    ours.index(corpus, show_progress=False)
    for query in (["milk"], ["oat", "milk"], ["organ", "chees"], ["bread", "whole"], ["nosuchword"]):
        assert np.allclose(theirs.get_scores(query), ours.get_scores(query), rtol=1e-6, atol=1e-7)


def test_an_index_built_on_the_previous_one_finds_what_a_fresh_one_finds():
    from shared.domain.search import SearchFilters

    products = generate_catalog(600)
    first = Catalog(products)
    before = Bm25sProductSearch(first)
    changed = []
    for i, p in enumerate(products):
        if i % 50 == 0:
            changed.append(p.model_copy(update={"name": "Zesty Lemon Curd", "attributes": ("brand-new",)}))
        elif i % 7 == 0:
            changed.append(p.model_copy(update={"in_stock": False, "price": 0.5}))  # same text, new facts
        elif i % 11 != 0:  # every 11th is deleted
            changed.append(p)
    changed += [p.model_copy(update={"id": f"new-{i}", "brand": "Newbrand"}) for i, p in enumerate(products[:30])]
    catalog = Catalog(changed, version=2, previous=first)
    reused, fresh = Bm25sProductSearch(catalog, before), Bm25sProductSearch(catalog)
    cases = [
        ("lemon curd", {}),
        ("milk", {}),
        ("organic bread", {"max_price": 3.0}),
        ("milk", {"include_out_of_stock": True, "min_price": 0.4}),
        ("yogurt", {"attributes": ("brand-new",)}),
        ("newbrand", {"brand": "newbrand"}),
        ("chips", {"category": products[5].category, "attributes": ("organic",)}),
    ]
    for query, fields in cases:
        filters = SearchFilters(**fields)
        a, b = reused.search(query, filters, 60), fresh.search(query, filters, 60)
        assert list(a.rows) == list(b.rows) and np.allclose(a.relevance, b.relevance), (query, fields)


def test_a_product_keeps_its_in_stock_through_the_store(tmp_path):
    store = SqliteCatalogStore(tmp_path / "catalog.sqlite3")
    store.replace([Product.model_validate(BY_ID["oat-milk"].model_dump() | {"in_stock": False})])
    assert store.load().products[0].in_stock is False


def test_a_feature_table_built_on_the_previous_one_gives_the_same_features(rules):
    from shared.domain.profile import Affinities

    products = generate_catalog(400)
    first = Catalog(products)
    changed = [
        p.model_copy(update={"brand": "Newbrand", "attributes": ("organic", "brand-new-attr")}) if i % 7 == 0 else p
        for i, p in enumerate(products[20:])
    ] + [p.model_copy(update={"id": f"added-{i}"}) for i, p in enumerate(products[:5])]
    second = Catalog(changed, version=2, previous=first)
    reused = FeatureTable(first, rules.ranking).for_catalog(second)
    fresh = FeatureTable(second, rules.ranking)
    scores = {"brand:newbrand": 0.8, "attribute:brand-new-attr": 0.4, "attribute:organic": -0.3}
    scores |= {key: 0.2 for _, key in second.keys(changed[1].id)}
    affinities = Affinities(scores, {}, 0.1)
    rows = np.arange(len(second))
    relevance = np.linspace(1, 0.1, len(rows))
    assert np.allclose(reused.features(rows, relevance, affinities), fresh.features(rows, relevance, affinities))


def test_a_profile_whose_products_vanished_keeps_working(rules, small_catalog):
    search, tracking = make(rules, small_catalog)
    tracking.track([click("oat-milk"), click("oat-yogurt")])
    without = Catalog([p for p in small_catalog.products if p.id not in ("oat-milk", "oat-yogurt")], version=2)
    search.engine.adopt(without)
    shelf = Shelf(without, Bm25sProductSearch(without))
    search.shelf = lambda: shelf
    search.ranker = lambda: Ranker(FeatureTable(without, rules.ranking))
    answer = search.search(SearchRequest(query="milk", user_id="u"))
    assert answer["personalization"]["applied"] is True
    assert "oat-milk" not in [r["product_id"] for r in answer["results"]]
    tracking.track([click("whole-milk")])  # and it keeps learning
