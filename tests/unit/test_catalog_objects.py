"""The object-store catalog's own mechanics on a local folder: the HEAD hint, compaction snapshots,
the instance cache and failures (the behaviour every store shares is in tests/contract)."""

from __future__ import annotations

import gzip
import json
import random

import pytest

from shared.adapters.archive.local import LocalFolderArchive
from shared.adapters.catalog.objects import ObjectCatalogStore
from shared.config import Settings
from shared.domain.catalog import CatalogChange, Product, ProductPatch
from shared.ports.archive import ArchiveUnavailable
from shared.ports.catalog_store import CatalogUnavailable


class CountingArchive(LocalFolderArchive):
    """A local folder that records the names it reads and can be made to fail."""

    def __init__(self, root) -> None:
        super().__init__(root)
        self.gets: list[str] = []
        self.failing: set[str] = set()  # "get", "put", "put HEAD"

    def get(self, name: str) -> bytes | None:
        if "get" in self.failing:
            raise ArchiveUnavailable("down")
        self.gets.append(name)
        return super().get(name)

    def put(self, name: str, data: bytes, if_absent: bool = False) -> bool:
        if "put" in self.failing or ("put HEAD" in self.failing and name.endswith("HEAD")):
            raise ArchiveUnavailable("down")
        return super().put(name, data, if_absent)


def item(i: int, **fields) -> Product:
    return Product(**{"id": f"p{i:04d}", "name": f"Product {i}", "category": "tea", "department": "drinks"} | fields)


@pytest.fixture()
def archive(tmp_path) -> CountingArchive:
    return CountingArchive(tmp_path / "archive")


def entry(archive: CountingArchive, version: int) -> dict:
    return json.loads(gzip.decompress(archive.get(f"catalog/log/{version:012d}.json.gz") or b""))


def test_head_is_a_hint_a_stale_missing_or_broken_one_still_finds_the_newest(archive):
    store = ObjectCatalogStore(archive)
    store.replace([item(0)])
    for i in range(1, 12):
        store.commit(CatalogChange(upserts=(item(i),)))
    assert json.loads(archive.get("catalog/HEAD") or b"") == {"version": 12, "snapshot": 1}
    for head in (b'{"version": 3, "snapshot": 1}', b"not json", None):
        if head is None:
            archive.delete("catalog/HEAD")
        else:
            archive.put("catalog/HEAD", head)
        fresh = ObjectCatalogStore(archive)
        assert fresh.latest() == 12
        loaded = fresh.load()
        assert loaded is not None and [p.id for p in loaded.products] == [f"p{i:04d}" for i in range(12)]


def test_a_fresh_instance_reads_one_snapshot_and_the_deltas_after_it(archive):
    store = ObjectCatalogStore(archive, snapshot_every=3)
    store.replace([item(0)])
    for i in range(1, 8):
        store.commit(CatalogChange(upserts=(item(i),), deletes=("p0000",) if i == 5 else ()))
    kinds = ["snapshot" if "products" in entry(archive, v) else "delta" for v in range(1, 9)]
    assert kinds == ["snapshot", "delta", "delta", "snapshot", "delta", "delta", "snapshot", "delta"]
    assert entry(archive, 7)["snapshot"] == 7 and entry(archive, 7)["replaced"] == 1
    assert entry(archive, 7)["upserted"][0]["id"] == "p0006"  # a compaction keeps its own change
    archive.gets.clear()
    loaded = ObjectCatalogStore(archive).load()
    assert loaded is not None and [p.id for p in loaded.products] == [f"p{i:04d}" for i in range(1, 8)]
    logs = sorted({name for name in archive.gets if name.startswith("catalog/log/")})
    assert logs == [f"catalog/log/{v:012d}.json.gz" for v in (7, 8, 9)]  # 9: the probe that found none
    delta = ObjectCatalogStore(archive).changes(2)  # across two compactions: still the deltas
    assert delta is not None and [p.id for p in delta.upserted] == [f"p{i:04d}" for i in range(2, 8)]
    assert delta.deleted == ["p0000"]


def test_deltas_past_snapshot_bytes_make_a_snapshot(archive):
    store = ObjectCatalogStore(archive, snapshot_bytes=600)
    store.replace([item(0)])
    rng = random.Random(7)  # names gzip cannot shrink much
    big = tuple(item(i, name=rng.randbytes(120).hex()) for i in range(1, 4))
    store.commit(CatalogChange(upserts=big[:1]))
    store.commit(CatalogChange(upserts=big[1:]))
    assert "products" not in entry(archive, 2) and "products" in entry(archive, 3)


def test_a_commit_on_the_same_instance_reads_no_log_object_again(archive):
    store = ObjectCatalogStore(archive)
    store.replace([item(i) for i in range(50)])
    store.load()
    archive.gets.clear()
    assert store.commit(CatalogChange(patches=(ProductPatch(id="p0007", in_stock=False),))) == 2
    assert archive.gets == ["catalog/HEAD", "catalog/log/000000000002.json.gz"]  # the hint and one probe
    loaded = store.load()
    assert loaded is not None and loaded.products[7] == item(7, in_stock=False)


def test_a_writer_behind_applies_its_change_on_the_newest_version(archive):
    first, second = ObjectCatalogStore(archive), ObjectCatalogStore(archive)
    first.replace([item(0)])
    first.load()
    second.commit(CatalogChange(upserts=(item(1),)))
    archive.put("catalog/HEAD", b'{"version": 1, "snapshot": 1}')  # as if the other's HEAD write failed
    assert first.commit(CatalogChange(patches=(ProductPatch(id="p0001", price=2.5),))) == 3
    loaded = second.load()
    assert loaded is not None and loaded.products == [item(0), item(1, price=2.5)]


def test_changes_further_back_than_max_changes_read_are_unknown(archive):
    store = ObjectCatalogStore(archive, max_changes_read=3)
    store.replace([item(0)])
    for i in range(1, 5):
        store.commit(CatalogChange(upserts=(item(i),)))
    assert store.changes(1) is None
    delta = store.changes(2)
    assert delta is not None and [p.id for p in delta.upserted] == ["p0002", "p0003", "p0004"]


def test_archive_failures_are_catalog_unavailable_and_change_nothing(archive):
    store = ObjectCatalogStore(archive)
    store.replace([item(0)])
    archive.failing = {"get"}
    for call in (store.latest, store.load, lambda: store.changes(1)):
        with pytest.raises(CatalogUnavailable, match="ArchiveUnavailable: down"):
            call()
    archive.failing = {"put"}
    with pytest.raises(CatalogUnavailable):
        store.commit(CatalogChange(upserts=(item(1),)))
    with pytest.raises(CatalogUnavailable):
        store.replace([item(2)])
    archive.failing = set()
    assert ObjectCatalogStore(archive).latest() == 1


def test_a_head_that_cannot_be_written_does_not_fail_the_commit(archive):
    store = ObjectCatalogStore(archive)
    store.replace([item(0)])
    archive.failing = {"put HEAD"}
    assert store.commit(CatalogChange(upserts=(item(1),))) == 2
    archive.failing = set()
    assert json.loads(archive.get("catalog/HEAD") or b"")["version"] == 1
    assert ObjectCatalogStore(archive).latest() == 2


def test_from_settings_uses_the_archive_setting_and_the_prefix(tmp_path):
    settings = Settings(archive="local", archive_path=tmp_path / "objects", catalog_prefix="shop-7/catalog/")
    ObjectCatalogStore.from_settings(settings).replace([item(0)])
    assert (tmp_path / "objects" / "shop-7" / "catalog" / "log" / "000000000001.json.gz").is_file()
    with pytest.raises(ValueError, match="unknown adapter 'nosuch'"):
        ObjectCatalogStore.from_settings(Settings(archive="nosuch"))
