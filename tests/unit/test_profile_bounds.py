"""Issue 17, items 1 and 2: an instance's memory and a profile's stored size stay bounded."""

from __future__ import annotations

import gc
import math
import random
import resource
import sys
import time
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.adapters.profile_store.memory import MemoryProfileStore
from shared.domain.catalog import Catalog
from shared.domain.engine import ProfileEngine
from shared.domain.events import Interaction
from shared.domain.profile import Profile
from shared.services.profile_cache import CachedProfileStore
from tests.conftest import SMALL_CATALOG
from tests.unit.test_engine_reference import RULES, assert_same

T0 = datetime(2026, 3, 1, tzinfo=UTC)
DAY = 86_400


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def bounded_cache(engine: ProfileEngine, durable, max_bytes: int, now: float, **options) -> CachedProfileStore:
    """The cache as bootstrap builds it, compacting as of `now` (the tests' clock, not the wall's)."""
    return CachedProfileStore(
        durable,
        engine,
        clock=Clock(),
        start_flusher=False,
        apply=engine.apply,
        compact=lambda profile, _: engine.compact(profile, now, max_bytes),
        **options,
    )


def allocated() -> tuple[int, int]:
    """(Python objects' memory blocks now, peak resident set in KiB): cheap enough to watch a
    million events (tracemalloc would make this test ten times slower)."""
    gc.collect()
    return sys.getallocatedblocks(), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def test_a_million_events_for_unknown_products_keep_the_instance_memory_flat(total=1_000_000):
    """1,000,000 tracked events, each naming a product, brand and category nobody sent before,
    for 20 shoppers (an 8-profile cache in front of an in-process store that keeps all 20).

    Bound: every stored profile fits in 16 KiB encoded, so what the instance holds is at most
    20 stored + 8 cached profiles of that size. After a warm-up of 200,000 events that fills them,
    the count of allocated blocks may not grow by more than 20,000 (a profile at the bound is
    about 3,500; the old shared index added 3 blocks per event, 2.4 million here) nor the peak
    resident set by more than 32 MiB. About 40 s on one core of the 2-core test machine.
    """
    engine = ProfileEngine(RULES, Catalog(SMALL_CATALOG))
    durable = MemoryProfileStore()
    store = bounded_cache(engine, durable, 16 * 2**10, T0.timestamp() + 3600, max_entries=8)
    rng = random.Random(17)
    base = Interaction(event_type="click_product", user_id="u0", product_id="p", timestamp=T0)
    users, batch = 20, 100
    growth: list[tuple[int, int]] = []
    start = time.perf_counter()
    for i in range(0, total, batch):
        if i == total // 5:  # warmed up: every profile is at its bound
            blocks, rss = allocated()
        user = f"u{(i // batch) % users}"
        events = [
            base.model_copy(  # cheaper than validating; the fields are what a client may send
                update={
                    "event_id": f"e{j}",
                    "user_id": user,
                    "product_id": f"p{j}-{rng.getrandbits(32):x}",
                    "product_brand": f"brand-{rng.getrandbits(32):x}",
                    "product_category": f"category-{rng.getrandbits(32):x}",
                    "timestamp": T0 + timedelta(seconds=j % 3600),
                }
            )
            for j in range(i, i + batch)
        ]
        store.track(user, events, engine.apply)
        if (i // batch) % users == users - 1:
            store.flush()
        if i > total // 5 and i % (total // 10) == 0:
            now_blocks, now_rss = allocated()
            growth.append((now_blocks - blocks, now_rss - rss))
            assert growth[-1][0] < 20_000 and growth[-1][1] < 32 * 2**10, growth  # fail fast
    store.flush()
    now_blocks, now_rss = allocated()
    growth.append((now_blocks - blocks, now_rss - rss))
    elapsed = time.perf_counter() - start
    assert all(b < 20_000 and kib < 32 * 2**10 for b, kib in growth), growth
    assert len(engine.facets) == 2 + len({key for p in SMALL_CATALOG for _, key in engine.catalog.keys(p.id)})
    assert all(len(engine.encode(durable._profiles[f"u{u}"])) <= 16 * 2**10 for u in range(users))
    print(f"{total:,} events in {elapsed:.1f} s; growth after warm-up (blocks, peak RSS KiB): {growth}")


# A heavy shopper's day: mostly browsing, some cart changes and purchases (bench/workload.py's mix).
MIX = {
    "view_details": 30, "click_product": 25, "displayed_but_scrolled": 15, "time_on_product": 8, "add_to_cart": 10,
    "quantity_increase": 2, "remove_from_cart": 2, "purchase": 6, "returned": 1, "save_for_later": 1,
}  # fmt: skip


def test_five_years_of_a_heavy_shopper_stay_under_the_bound_and_read_the_same():
    """25 events a day for 5 years (45,625), half on 30 staples, 30% in 6 favourite categories and
    20% anywhere in the 5,000-product demo catalog, written behind once a week. The stored profile
    stays under the default bound (512 KiB; about 300 KB here, 660 KB uncompacted) and reads as the
    profile that was never compacted (to within 1e-5: what compaction forgot was below 1e-6)."""
    from shared.config import Settings
    from shared.domain.catalog_generator import generate_catalog

    bound = Settings().profile_max_stored_bytes
    catalog = Catalog(generate_catalog(5_000))
    engine = ProfileEngine(RULES, catalog)
    durable = MemoryProfileStore()
    today = [0.0]
    store = CachedProfileStore(
        durable,
        engine,
        clock=Clock(),
        start_flusher=False,
        apply=engine.apply,
        compact=lambda profile, _: engine.compact(profile, today[0], bound),
    )
    rng = random.Random(5)
    categories = rng.sample(sorted({p.category for p in catalog.products}), 6)
    pool = [p.id for p in catalog.products if p.category in categories]
    staples = rng.sample(pool, 30)
    anywhere = [p.id for p in catalog.products]
    kinds, weights = list(MIX), list(MIX.values())
    uncompacted = Profile("u")
    start = datetime(2021, 11, 1, tzinfo=UTC)
    largest = 0
    for day in range(5 * 365):
        events = []
        for i in range(25):
            r = rng.random()
            product = rng.choice(staples if r < 0.5 else pool if r < 0.8 else anywhere)
            kind = rng.choices(kinds, weights)[0]
            events.append(
                Interaction(
                    event_id=f"d{day}-{i}",
                    event_type=kind,
                    user_id="u",
                    product_id=product,
                    quantity=rng.choice((1, 1, 2, 3)),
                    timestamp=start + timedelta(days=day, seconds=rng.uniform(0, DAY)),
                    context={"time_on_page": rng.uniform(5, 90)} if kind == "time_on_product" else {},
                )
            )
        store.track("u", events, engine.apply)
        for event in events:
            engine.apply(uncompacted, event)
        today[0] = (start + timedelta(days=day + 1)).timestamp()
        if day % 7 == 6:
            store.flush()
            largest = max(largest, len(durable.read("u", engine.encode) or b""))
    store.flush()
    largest = max(largest, len(durable.read("u", engine.encode) or b""))
    now = today[0]
    stored = durable.read("u", lambda p: engine.decode("u", engine.encode(p)))
    assert stored is not None
    assert largest <= bound
    assert len(engine.encode(uncompacted)) > 1.5 * largest  # compaction did forget what had expired
    for at in (now, now + 30 * DAY):
        a, b = engine.read(stored, at), engine.read(uncompacted, at)
        assert a.scores == pytest.approx(b.scores, abs=1e-5) and a.dominant == b.dominant
        assert a.price_preference == pytest.approx(b.price_preference, abs=1e-5)
        assert a.history.keys() == b.history.keys()
        assert all(a.history[k] == pytest.approx(b.history[k], abs=1e-5) for k in b.history)
    assert engine.preferred_quantities(stored) == engine.preferred_quantities(uncompacted)
    print(f"largest stored profile {largest:,} bytes, uncompacted {len(engine.encode(uncompacted)):,}")


def unknown_product(i: int, when: datetime, kind: str = "click_product") -> Interaction:
    return Interaction(
        event_id=f"x{i}",
        event_type=kind,
        user_id="u",
        product_id=f"new-{i}",
        product_brand=f"Brand {i % 7}",
        product_category="Kombucha",
        product_attributes=["Organic", f"batch-{i}"],
        timestamp=when,
    )


def test_past_the_bound_the_weakest_facets_go_and_the_strongest_read_the_same():
    engine = ProfileEngine(RULES, Catalog(SMALL_CATALOG))
    profile, now = Profile("u"), T0.timestamp() + 200 * DAY
    for i in range(200):  # newer and newer unknown products; each new one is stronger
        engine.apply(profile, unknown_product(i, T0 + timedelta(days=i), "purchase"))
    engine.apply(profile, Interaction(event_type="purchase", user_id="u", product_id="skim-milk", timestamp=T0))
    before = engine.read(profile, now)
    engine.compact(profile, now, 8_192)
    after = engine.read(profile, now)
    assert len(engine.encode(profile)) <= 8_192
    kept = after.scores.keys() | after.history.keys()
    products = sorted(int(k.removeprefix("product:new-")) for k in kept if k.startswith("product:new-"))
    assert products[0] > 0 and products == list(range(products[0], 200))  # the newest, strongest, stay
    assert after.scores == {k: before.scores[k] for k in after.scores}  # what stays reads the same
    assert after.history == {k: before.history[k] for k in after.history}
    assert after.price_preference == before.price_preference  # the price accumulators always stay
    quantities = engine.preferred_quantities(profile)
    assert quantities.keys() == {k.split(":", 1)[1] for k in kept if k.startswith("product:")}
    used = {k for k in {*kept, *after.history} if engine.facets.get(k) is None}
    assert set(profile.local_keys()) == used  # the dropped products' own keys are forgotten too


def histories(kinds: list[str]):
    return st.lists(st.tuples(st.integers(0, 12), st.sampled_from(kinds)), min_size=1, max_size=30)


@settings(max_examples=60, deadline=None)
# Session events are left out of the purchase memory and do not see the profile's purchases, so
# only clicks and carts there read exactly as the reference does.
@given(histories(["click_product", "purchase", "add_to_cart", "returned"]), histories(["click_product", "add_to_cart"]))
def test_profiles_with_unknown_keys_survive_encoding_eviction_and_reload(history, session_history):
    """Unknown products (and their brands, categories and attributes) read back equal after the
    write-behind, an eviction and a reload, with session events naming unknown products too;
    the instance's facet index does not grow."""
    engine = ProfileEngine(RULES, Catalog(SMALL_CATALOG), dedup_window=64)
    indexed = len(engine.facets._keys)
    now = T0.timestamp() + 40 * DAY

    def stream(items, offset):
        return [
            unknown_product(p, T0 + timedelta(days=n + offset), kind).model_copy(update={"event_id": f"{offset}-{n}"})
            for n, (p, kind) in enumerate(items)
        ]

    events, session = stream(history, 0), stream(session_history, 5)
    store = bounded_cache(engine, MemoryProfileStore(), 256 * 2**10, now, max_entries=1)
    store.track("u", events, engine.apply)
    store.flush()
    store.track("other", [events[0].model_copy(update={"user_id": "other"})], engine.apply)
    store.flush()
    assert "u" not in store._entries  # evicted: the next read reloads it from the store
    reloaded = store.read("u", lambda p: engine.read(p, now, session))
    assert reloaded is not None
    assert_same(reloaded, engine.reference(events + session, now))
    history = engine.reference(events, now).history
    assert reloaded.history.keys() == history.keys()
    assert all(math.isclose(reloaded.history[k][0], history[k][0], abs_tol=1e-9) for k in history)
    assert len(engine.facets._keys) == indexed
