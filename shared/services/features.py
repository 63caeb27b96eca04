"""Use case: publish what the jobs learnt to the serving side, as one features snapshot per run.

Each source is one job table aggregated to one row per shopper (or product) in BigQuery SQL and
read in keyset pages, so no table is ever loaded whole into Python.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from shared.ports.feature_store import Document, FeatureStore
from shared.ports.warehouse import Warehouse
from shared.services.jobs import finished_jobs, latest_publication

log = logging.getLogger(__name__)
PAGE = 5_000


@dataclass(frozen=True)
class Source:
    kind: str  # "user" or "product"
    table: str  # the job whose table(s) it reads (skipped until that job has run)
    select: str  # BigQuery SQL: one row per id, `id` first, filtered by `id > @after`
    document: Callable[[dict[str, Any]], Document]


SOURCES = (
    Source(
        "user",
        "next_basket",
        "SELECT user_id AS id, ARRAY_AGG(STRUCT(product_id, usual) ORDER BY position) AS items FROM next_basket "
        "WHERE user_id > @after GROUP BY user_id",
        lambda row: {
            "usual": [i["product_id"] for i in row["items"] if i["usual"]][:10],
            "next_basket": [i["product_id"] for i in row["items"]],  # the recommender's whole list
        },
    ),
    Source(
        "user",
        "order_lines",
        "SELECT user_id AS id, ARRAY_AGG(DISTINCT product_id ORDER BY product_id) AS products FROM order_lines "
        "WHERE user_id > @after GROUP BY user_id",
        lambda row: {"bought": list(row["products"])},  # what new_for_you never proposes
    ),
    Source(
        "user",
        "reorder_predictions",
        "SELECT user_id AS id, ARRAY_AGG(STRUCT(product_id, cycle_days, confidence, next_expected)) AS cycles "
        "FROM reorder_predictions WHERE user_id > @after GROUP BY user_id",
        lambda row: {
            "reorder": {
                c["product_id"]: {
                    "cycle_days": float(c["cycle_days"]),
                    "confidence": round(float(c["confidence"]), 3),
                    "next_expected": str(c["next_expected"])[:10],
                }
                for c in row["cycles"]
            }
        },
    ),
    Source(
        "user",
        "quantity_predictions",
        "SELECT user_id AS id, ARRAY_AGG(STRUCT(product_id, suggested_quantity)) AS quantities "
        "FROM quantity_predictions WHERE user_id > @after AND suggested_quantity > 1 GROUP BY user_id",
        lambda row: {"quantities": {q["product_id"]: int(q["suggested_quantity"]) for q in row["quantities"]}},
    ),
    Source(
        "user",
        "dietary_patterns",
        "SELECT user_id AS id, ARRAY_AGG(attribute ORDER BY share DESC, attribute) AS attributes "
        "FROM dietary_patterns WHERE user_id > @after GROUP BY user_id",
        lambda row: {"dietary": list(row["attributes"])},
    ),
    Source(
        "user",
        "discovery_items",
        "SELECT user_id AS id, ARRAY_AGG(product_id ORDER BY score DESC, product_id) AS products "
        "FROM discovery_items WHERE user_id > @after GROUP BY user_id",
        lambda row: {"discovery": list(row["products"])},
    ),
    Source(
        "user",
        "user_segments",
        "SELECT user_id AS id, segment, bulk_buyer FROM user_segments WHERE user_id > @after",
        lambda row: {"segment": row["segment"], "bulk_buyer": bool(row["bulk_buyer"])},
    ),
    Source(
        "user",
        "price_sensitivity",
        "SELECT user_id AS id, tier FROM price_sensitivity WHERE user_id > @after",
        lambda row: {"price_tier": row["tier"]},
    ),
    Source(
        "product",
        "product_associations",
        "SELECT product_id AS id, ARRAY_AGG(other_id ORDER BY lift DESC, orders DESC, other_id) AS others "
        "FROM product_associations WHERE product_id > @after AND lift > 1 GROUP BY product_id",
        lambda row: {"goes_with": list(row["others"])[:10]},
    ),
    Source(
        "store",
        "trending_products",
        "SELECT 'trending' AS id, ARRAY_AGG(product_id ORDER BY trend DESC, product_id) AS products "
        "FROM trending_products WHERE 'trending' > @after GROUP BY id",  # no rows, no document (keyset paging)
        lambda row: {"products": list(row["products"] or [])},
    ),
    Source(
        "store",
        "popular_queries",
        "SELECT 'queries' AS id, ARRAY_AGG(STRUCT(query, searches, shoppers) ORDER BY searches DESC, query) AS items "
        "FROM popular_queries WHERE 'queries' > @after GROUP BY id",
        lambda row: {"queries": [dict(q) for q in row["items"]]},
    ),
    Source(
        "user",
        "user_queries",
        "SELECT user_id AS id, ARRAY_AGG(query ORDER BY last_searched DESC, query) AS queries FROM user_queries "
        "WHERE user_id > @after GROUP BY user_id",
        lambda row: {"queries": list(row["queries"])},  # their own: shown to them alone
    ),
    Source(
        "store",
        "context_patterns",
        "SELECT 'context' AS id, ARRAY_AGG(STRUCT(slot, category, lift) ORDER BY slot, category) AS lifts "
        "FROM context_patterns WHERE user_id IS NULL AND 'context' > @after GROUP BY id",
        lambda row: {"lifts": [dict(entry) for entry in row["lifts"]]},  # shared.domain.context.lifts_of reads it
    ),
    Source(  # the same store document, merged: the weight the job tuned, and how it tuned it
        "store",
        "context_patterns",
        "SELECT 'context' AS id, weight, tuning FROM context_weight WHERE 'context' > @after",
        lambda row: {"weight": float(row["weight"]), "tuning": json.loads(row["tuning"])},
    ),
    Source(
        "user",
        "context_patterns",
        "SELECT user_id AS id, ARRAY_AGG(STRUCT(slot, category, lift) ORDER BY slot, category) AS lifts "
        "FROM context_patterns WHERE user_id > @after GROUP BY user_id",
        lambda row: {"context": [dict(entry) for entry in row["lifts"]]},
    ),
    Source(
        "product",
        "item_neighbours",
        "SELECT product_id AS id, ARRAY_AGG(other_id ORDER BY similarity DESC, other_id) AS others "
        "FROM item_neighbours WHERE product_id > @after GROUP BY product_id",
        lambda row: {"similar": list(row["others"])[:10]},
    ),
)


def version_name(at: datetime) -> str:
    return at.strftime("%Y%m%dT%H%M%SZ")


class FeaturePublisher:
    """Builds a features snapshot from the job tables and makes it the served version."""

    def __init__(
        self,
        warehouse: Warehouse,
        store: FeatureStore,
        page: int = PAGE,
        being_erased: Callable[[], Collection[str]] = frozenset,
    ) -> None:
        self.warehouse = warehouse
        self.store = store
        self.page = page
        self.being_erased = being_erased  # shoppers whose deletion is pending: left out of every snapshot

    def __call__(self, window_end: datetime) -> dict[str, Any]:
        return self.publish(version_name(window_end))

    def publish(self, version: str) -> dict[str, Any]:
        """Build version `version` (named by a time: a window's end, or an erasure's) and serve it."""
        ran = finished_jobs(self.warehouse)  # an erasure may publish before any job has run
        sources = [s for s in SOURCES if s.table in ran]
        erased = set(self.being_erased())
        counts = self.store.publish(version, ((s.kind, self._documents(s, erased)) for s in sources))
        log.info("published features %s from %s: %s", version, [s.table for s in sources], counts)
        return {"version": version, "sources": [s.table for s in sources]} | counts

    def republish(self, now: datetime) -> dict[str, Any]:
        """The job tables again without the shoppers being erased (an erasure's version).

        Named after the newest window published, so it sorts after that window's version and
        before the next window's ("20261203T100000Z-erased-20261203T103000Z"): a window published
        after an erasure is still served, and the snapshot never moves back.
        """
        latest = latest_publication(self.warehouse)
        erasure = version_name(now)
        return self.publish(erasure if latest is None else f"{version_name(latest)}-erased-{erasure}")

    def _documents(self, source: Source, erased: set[str]) -> Iterator[tuple[str, Document]]:
        after = ""
        while True:
            rows = self.warehouse.query(f"{source.select} ORDER BY id LIMIT @n", {"after": after, "n": self.page})
            for row in rows:
                if source.kind != "user" or str(row["id"]) not in erased:  # no shopper in a store document
                    yield str(row["id"]), source.document(row)
            if len(rows) < self.page:
                return
            after = str(rows[-1]["id"])
