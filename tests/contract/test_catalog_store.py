"""One suite for every CatalogStore adapter: SQLite, and the object-store log on a local folder and
on Cloud Storage (fake-gcs-server)."""

from __future__ import annotations

import random
import threading
import uuid
from collections.abc import Callable, Iterator

import pytest

from shared.adapters.archive.local import LocalFolderArchive
from shared.adapters.catalog.objects import ObjectCatalogStore
from shared.config import Settings
from shared.domain.catalog import CatalogChange, CatalogError, Product, ProductPatch
from shared.ports.archive import Archive
from shared.ports.catalog_store import CatalogDelta, CatalogStore

# Small, so that the suite's sequences cross compaction snapshots on the object store.
SNAPSHOT_EVERY = 4


@pytest.fixture(params=["sqlite", "objects-local", "objects-gcs"])
def open_store(request, tmp_path) -> Iterator[Callable[[], CatalogStore]]:
    """Opens stores on one test's own catalog, as separate instances would."""
    opened: list[CatalogStore] = []
    if request.param == "sqlite":
        from shared.adapters.catalog.sqlite import SqliteCatalogStore

        factory: Callable[[], CatalogStore] = lambda: SqliteCatalogStore(tmp_path / "catalog.sqlite3")  # noqa: E731
    else:
        archive: Callable[[], Archive]
        if request.param == "objects-local":
            archive = lambda: LocalFolderArchive(tmp_path / "archive")  # noqa: E731
        else:
            request.getfixturevalue("gcs_emulator")
            from shared.adapters.archive.gcs import GcsArchive

            settings = Settings(archive_bucket=f"catalog-{uuid.uuid4().hex[:12]}")
            GcsArchive.from_settings(settings).prepare()
            archive = lambda: GcsArchive.from_settings(settings)  # noqa: E731
        factory = lambda: ObjectCatalogStore(archive(), snapshot_every=SNAPSHOT_EVERY)  # noqa: E731

    def open_one() -> CatalogStore:
        store = factory()
        opened.append(store)
        return store

    yield open_one
    for store in opened:
        store.close()


@pytest.fixture()
def store(open_store) -> CatalogStore:
    return open_store()


def item(i: int, **fields) -> Product:
    return Product(
        **{"id": f"p{i:04d}", "name": f"Product {i}", "category": "milk", "department": "dairy", "price": 1.0} | fields
    )


def applied(delta: CatalogDelta, products: list[Product]) -> list[Product]:
    """A delta applied as an instance applies it: deletes, then upserts."""
    by_id = {p.id: p for p in products}
    for product_id in delta.deleted:
        by_id.pop(product_id, None)
    by_id.update((p.id, p) for p in delta.upserted)
    return list(by_id.values())


def test_an_empty_store_holds_no_version(store):
    assert store.latest() is None
    assert store.load() is None
    assert store.changes(0) is None and store.changes(1) is None


def test_replace_then_load_keeps_order_and_stock(open_store):
    store = open_store()
    products = [item(3), item(1, in_stock=False), item(2, brand="Oatly", attributes=("vegan",))]
    assert store.replace(products) == 1
    for reader in (store, open_store()):  # this instance, and one that never saw it written
        assert reader.latest() == 1
        loaded = reader.load()
        assert loaded is not None and loaded.version == 1 and loaded.products == products
    assert store.replace([item(9)]) == 2
    loaded = open_store().load()
    assert loaded is not None and (loaded.version, loaded.products) == (2, [item(9)])


def test_commit_makes_the_next_version_with_exactly_the_change(open_store):
    store = open_store()
    store.replace([item(i) for i in range(5)])
    change = CatalogChange(
        upserts=(item(5), item(1, price=9.5)),
        patches=(ProductPatch(id="p0002", in_stock=False),),
        deletes=("p0003",),
    )
    assert store.commit(change) == 2
    expected = [item(0), item(1, price=9.5), item(2, in_stock=False), item(4), item(5)]
    for reader in (store, open_store()):
        loaded = reader.load()
        assert loaded is not None and loaded.version == 2 and loaded.products == expected
        delta = reader.changes(1)
        assert delta is not None and delta.version == 2
        assert {p.id: p for p in delta.upserted} == {p.id: p for p in (item(5), item(1, price=9.5), expected[2])}
        assert delta.deleted == ["p0003"]
        assert reader.changes(2) == CatalogDelta(2, [], [])


def test_a_patch_of_a_missing_product_names_it_and_changes_nothing(open_store):
    store = open_store()
    store.replace([item(0)])
    change = CatalogChange(upserts=(item(1),), patches=(ProductPatch(id="ghost", price=2.0),))
    with pytest.raises(CatalogError, match="ghost") as raised:
        store.commit(change)
    assert [e.message for e in raised.value.errors] == ["id: no product 'ghost' to patch"]
    for reader in (store, open_store()):
        assert reader.latest() == 1
        loaded = reader.load()
        assert loaded is not None and loaded.products == [item(0)]


def random_change(rng: random.Random, products: dict[str, Product]) -> CatalogChange:
    """Upserts of new, known and deleted ids, patches of held ones, deletes of held or unknown ones."""
    held = sorted(products)
    upserts = tuple(item(rng.randrange(40), price=float(rng.randrange(1, 50))) for _ in range(rng.randrange(4)))
    patched = rng.sample(held, min(len(held), rng.randrange(3)))
    patches = tuple(ProductPatch(id=pid, in_stock=rng.random() < 0.5, price=rng.randrange(50)) for pid in patched)
    deletes = tuple(rng.sample([*held, "p9999"], min(len(held) + 1, rng.randrange(3))))
    return CatalogChange(upserts=upserts, patches=patches, deletes=deletes)


def test_changes_since_any_version_bring_it_to_the_newest(open_store):
    store, rng = open_store(), random.Random(18)
    store.replace([item(i) for i in range(10)])
    loaded = store.load()
    assert loaded is not None
    states = {1: loaded.products}
    for _ in range(14):
        version = store.commit(random_change(rng, {p.id: p for p in states[max(states)]}))
        loaded = store.load()
        assert loaded is not None and loaded.version == version == max(states) + 1
        states[version] = loaded.products
    newest = max(states)
    reader = open_store()
    for since, products in states.items():
        delta = reader.changes(since)
        assert delta is not None and delta.version == newest
        assert applied(delta, products) == states[newest], f"changes({since})"


def test_changes_across_a_replace_are_unknown(store):
    store.replace([item(0)])
    store.commit(CatalogChange(upserts=(item(1),)))
    store.replace([item(2)])
    store.commit(CatalogChange(upserts=(item(3),), deletes=("p0002",)))
    assert store.changes(1) is None and store.changes(2) is None
    assert store.changes(3) == CatalogDelta(4, [item(3)], ["p0002"])
    assert store.changes(0) is None and store.changes(5) is None  # not versions it holds


def test_concurrent_writers_lose_no_change_and_leave_no_gap(open_store):
    stores = [open_store(), open_store()]
    stores[0].replace([item(0)])
    versions: list[int] = []
    errors: list[BaseException] = []

    def write(store: CatalogStore, first: int) -> None:
        try:
            for i in range(first, first + 6):
                change = CatalogChange(upserts=(item(i),), patches=(ProductPatch(id="p0000", price=i),))
                versions.append(store.commit(change))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(stores[n % 2], 100 + 10 * n)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert sorted(versions) == list(range(2, 26))
    reader = open_store()
    loaded = reader.load()
    assert loaded is not None and loaded.version == 25 and reader.latest() == 25
    written = {f"p{100 + 10 * n + i:04d}" for n in range(4) for i in range(6)}
    assert {p.id for p in loaded.products} == {"p0000"} | written
    for since in range(1, 25):  # every version is there, one after another
        delta = reader.changes(since)
        assert delta is not None and len(delta.upserted) == 26 - since


def test_a_reader_sees_each_version_whole(open_store):
    writer, reader = open_store(), open_store()
    writer.replace([item(i, price=0.0) for i in range(200)])
    done = threading.Event()
    seen: list[tuple[int, set[float | None], int]] = []

    def write() -> None:
        try:
            for n in range(1, 13):
                writer.commit(CatalogChange(upserts=tuple(item(i, price=float(n)) for i in range(200))))
        finally:
            done.set()

    thread = threading.Thread(target=write)
    thread.start()
    while not done.is_set():
        loaded = reader.load()
        assert loaded is not None
        seen.append((loaded.version, {p.price for p in loaded.products}, len(loaded.products)))
    thread.join()
    assert seen and all(prices == {float(version - 1)} and n == 200 for version, prices, n in seen)


def test_a_thousand_products_in_one_commit(open_store):
    store = open_store()
    store.replace([item(0)])
    many = tuple(item(i, price=float(i % 90)) for i in range(1, 1001))
    assert store.commit(CatalogChange(upserts=many)) == 2
    loaded = open_store().load()
    assert loaded is not None and loaded.products == [item(0), *many]
    delta = store.changes(1)
    assert delta is not None and delta.upserted == list(many) and delta.deleted == []
