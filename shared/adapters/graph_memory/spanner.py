"""Graph memory on Google Cloud Spanner: Graphiti's model as tables, queried in plain GoogleSQL.

Entities, Relationships (bi-temporal: valid_at / invalid_at, created_at / expired_at) and
Episodes follow Graphiti's nodes, edges and episodes; Orders / OrderItems hold the order
history and ReorderPatterns the reorder_cycle facts in a shape "due for reorder" reads directly.
Every write is one read-write transaction, retried by the client when Spanner aborts it (the
emulator allows one at a time and aborts the others).
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
from collections import defaultdict
from collections.abc import Collection, Iterable
from datetime import UTC, datetime
from typing import Any

from google.api_core import exceptions as google_exceptions
from google.cloud import spanner
from google.cloud.spanner_v1 import JsonObject
from google.cloud.spanner_v1.transaction import Transaction

from shared.config import Settings
from shared.domain.memory import (
    BOUGHT_WITH,
    REORDER_CYCLE,
    STORE_GROUP,
    Fact,
    OrderLine,
    OrderRecord,
    SignalRecord,
    basket_pairs,
    new_lines,
    product_node,
    stable_id,
    user_group,
    user_node,
)
from shared.ports.graph_memory import GraphMemory, GraphUnavailable, ProductInfo

SCHEMA = [
    """CREATE TABLE Entities (
        uuid STRING(64) NOT NULL,
        group_id STRING(MAX) NOT NULL,
        kind STRING(32) NOT NULL,
        name STRING(MAX),
        summary STRING(MAX),
        attributes JSON,
        created_at TIMESTAMP NOT NULL
    ) PRIMARY KEY (uuid)""",
    "CREATE INDEX EntitiesByGroup ON Entities(group_id)",
    """CREATE TABLE Relationships (
        uuid STRING(64) NOT NULL,
        group_id STRING(MAX) NOT NULL,
        name STRING(64) NOT NULL,
        source_uuid STRING(64) NOT NULL,
        target_uuid STRING(64) NOT NULL,
        fact STRING(MAX),
        attributes JSON,
        episodes ARRAY<STRING(64)>,
        valid_at TIMESTAMP NOT NULL,
        invalid_at TIMESTAMP,
        created_at TIMESTAMP NOT NULL,
        expired_at TIMESTAMP
    ) PRIMARY KEY (uuid)""",
    "CREATE INDEX RelationshipsByGroup ON Relationships(group_id, name)",
    "CREATE INDEX RelationshipsBySource ON Relationships(source_uuid, name)",
    "CREATE INDEX RelationshipsByTarget ON Relationships(target_uuid, name)",
    """CREATE TABLE Episodes (
        uuid STRING(64) NOT NULL,
        group_id STRING(MAX) NOT NULL,
        kind STRING(32) NOT NULL,
        name STRING(MAX),
        content JSON,
        mentions ARRAY<STRING(64)>,
        valid_at TIMESTAMP NOT NULL,
        created_at TIMESTAMP NOT NULL
    ) PRIMARY KEY (uuid)""",
    "CREATE INDEX EpisodesByGroup ON Episodes(group_id, kind)",
    """CREATE TABLE Orders (
        user_id STRING(128) NOT NULL,
        order_id STRING(128) NOT NULL,
        episode_uuid STRING(64) NOT NULL,
        placed_at TIMESTAMP NOT NULL,
        total FLOAT64
    ) PRIMARY KEY (user_id, order_id)""",
    """CREATE TABLE OrderItems (
        user_id STRING(128) NOT NULL,
        order_id STRING(128) NOT NULL,
        product_id STRING(128) NOT NULL,
        quantity INT64 NOT NULL,
        price FLOAT64
    ) PRIMARY KEY (user_id, order_id, product_id),
      INTERLEAVE IN PARENT Orders ON DELETE CASCADE""",
    """CREATE TABLE ReorderPatterns (
        user_uuid STRING(64) NOT NULL,
        product_id STRING(128) NOT NULL,
        relationship_uuid STRING(64) NOT NULL,
        cycle_days FLOAT64 NOT NULL,
        confidence FLOAT64 NOT NULL,
        next_expected TIMESTAMP NOT NULL,
        valid_at TIMESTAMP NOT NULL,
        invalid_at TIMESTAMP,
        expired_at TIMESTAMP
    ) PRIMARY KEY (user_uuid, product_id, relationship_uuid)""",
]
# For exploring the graph with GQL in production. Spanner's emulator cannot parse it, so it is a
# separate migration that nothing in the code depends on (`python -m shared.adapters.graph_memory.spanner`).
PROPERTY_GRAPH = [
    """CREATE PROPERTY GRAPH MemoryGraph
      NODE TABLES (Entities KEY (uuid) LABEL Entity PROPERTIES ALL COLUMNS,
                   Episodes KEY (uuid) LABEL Episode PROPERTIES ALL COLUMNS)
      EDGE TABLES (Relationships KEY (uuid)
                     SOURCE KEY (source_uuid) REFERENCES Entities (uuid)
                     DESTINATION KEY (target_uuid) REFERENCES Entities (uuid)
                     LABEL RELATES_TO PROPERTIES ALL COLUMNS)"""
]
RELATIONSHIP_COLUMNS = (
    "uuid", "group_id", "name", "source_uuid", "target_uuid", "fact", "attributes", "episodes",
    "valid_at", "invalid_at", "created_at", "expired_at",
)  # fmt: skip
ENTITY_COLUMNS = ("uuid", "group_id", "kind", "name", "summary", "attributes", "created_at")
EPISODE_COLUMNS = ("uuid", "group_id", "kind", "name", "content", "mentions", "valid_at", "created_at")
TRANSIENT = (google_exceptions.ServiceUnavailable, google_exceptions.DeadlineExceeded, google_exceptions.RetryError)
STRING = spanner.param_types.STRING


def rows_of(results: Any) -> list[dict[str, Any]]:
    rows = list(results)
    names = [field.name for field in results.fields] if rows else []
    return [dict(zip(names, row, strict=True)) for row in rows]


def utc(value: datetime | None) -> datetime | None:
    return None if value is None else value.astimezone(UTC)


class SpannerGraphMemory(GraphMemory):
    def __init__(self, database: Any) -> None:
        self.database = database
        self._known_products: set[str] = set()
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Settings) -> SpannerGraphMemory:
        if os.environ.get("SPANNER_EMULATOR_HOST"):
            # The emulator fails concurrent read-write transactions on multiplexed sessions with
            # errors the client does not retry; classic sessions get ABORTED, which it retries.
            for name in ("", "_FOR_RW", "_PARTITIONED_OPS"):
                os.environ.setdefault(f"GOOGLE_CLOUD_SPANNER_MULTIPLEXED_SESSIONS{name}", "false")
        client = spanner.Client(project=settings.spanner_project, disable_builtin_metrics=True)
        instance = client.instance(settings.spanner_instance)
        return cls(instance.database(settings.spanner_database))

    @staticmethod
    def create_database(client: Any, instance_id: str, database_id: str) -> Any:
        """Create the instance (emulator config) and the database with SCHEMA: local runs and tests.
        In production Terraform creates both with the same DDL."""
        instance = client.instance(
            instance_id, configuration_name=f"projects/{client.project}/instanceConfigs/emulator-config", node_count=1
        )
        with contextlib.suppress(google_exceptions.AlreadyExists):
            instance.create().result(60)
        database = instance.database(database_id, ddl_statements=SCHEMA)
        with contextlib.suppress(google_exceptions.AlreadyExists):
            database.create().result(120)
        return database

    def _write(self, work: Any, *args: Any) -> Any:
        try:
            return self.database.run_in_transaction(work, *args, default_retry_delay=0.01, timeout_secs=60)
        except TRANSIENT as exc:
            raise GraphUnavailable(f"Spanner: {exc}") from exc

    def _read(self, sql: str, **params: Any) -> list[dict[str, Any]]:
        types = {name: _type_of(value) for name, value in params.items()}
        try:
            with self.database.snapshot() as snapshot:
                return rows_of(snapshot.execute_sql(sql, params=params, param_types=types))
        except TRANSIENT as exc:
            raise GraphUnavailable(f"Spanner: {exc}") from exc

    # -- writes ----------------------------------------------------------------------------------
    def record_orders(self, orders: list[OrderRecord], products: Iterable[ProductInfo]) -> int:
        products = list(products)
        episode_of = {(o.user_id, o.order_id): o.episode_id for o in orders}

        def work(tx: Transaction) -> int:
            recorded: dict[str, set[str]] = {}
            for row in rows_of(
                tx.execute_sql(
                    "SELECT user_id, order_id, product_id FROM OrderItems "
                    "WHERE user_id IN UNNEST(@users) AND order_id IN UNNEST(@orders)",
                    params={
                        "users": sorted({o.user_id for o in orders}),
                        "orders": sorted({o.order_id for o in orders}),
                    },
                    param_types={
                        "users": spanner.param_types.Array(STRING),
                        "orders": spanner.param_types.Array(STRING),
                    },
                )
            ):
                episode = episode_of.get((row["user_id"], row["order_id"]))
                if episode is not None:
                    recorded.setdefault(episode, set()).add(row["product_id"])
            added, pairs = new_lines(orders, recorded)
            if not added:
                return 0
            now = datetime.now(UTC)
            self._write_catalog(tx, products, now)
            self._write_users(tx, {o.user_id for o in orders}, now)
            done: set[str] = set()
            for order in orders:
                if order.episode_id not in added or order.episode_id in done:
                    continue
                done.add(order.episode_id)
                new = added[order.episode_id]
                tx.insert_or_update(
                    "Orders",
                    ("user_id", "order_id", "episode_uuid", "placed_at", "total"),
                    [(order.user_id, order.order_id, order.episode_id, order.placed_at, order.total)],
                )
                tx.insert(
                    "OrderItems",
                    ("user_id", "order_id", "product_id", "quantity", "price"),
                    [(order.user_id, order.order_id, ln.product_id, ln.quantity, ln.price) for ln in new],
                )
                everything = sorted(recorded.get(order.episode_id, set()) | {ln.product_id for ln in new})
                content: dict[str, Any] = {"order_id": order.order_id, "user_id": order.user_id}
                content |= {"total": order.total, "lines": [{"product_id": p} for p in everything]}
                mentions = [user_node(order.user_id)] + [product_node(p) for p in everything]
                tx.insert_or_update(
                    "Episodes",
                    EPISODE_COLUMNS,
                    [(order.episode_id, user_group(order.user_id), "order", f"order {order.order_id}",
                      JsonObject(content), mentions, order.placed_at, now)],
                )  # fmt: skip
            self._count_pairs(tx, pairs, now)
            return sum(len(lines) for lines in added.values())

        count: int = self._write(work)
        self._known_products.update(p.product_id for p in products)
        return count

    def _write_catalog(self, tx: Transaction, products: list[ProductInfo], now: datetime) -> None:
        entities: list[tuple] = []
        relationships: list[tuple] = []
        for product in products:
            if product.product_id in self._known_products:
                continue
            pid = product_node(product.product_id)
            attributes = {"product_id": product.product_id, "brand": product.brand, "category": product.category}
            entities.append((pid, STORE_GROUP, "Product", product.name, None, JsonObject(attributes), now))
            related = [("Brand", "made_by", product.brand), ("Category", "in_category", product.category)]
            related += [("Attribute", "has_attribute", a) for a in product.attributes]
            for kind, relation, value in related:
                if value:
                    uid = stable_id(kind, value.lower())
                    entities.append((uid, STORE_GROUP, kind, value, None, JsonObject({}), now))
                    fact = f"{product.name} {relation.replace('_', ' ')} {value}"
                    relationships.append(
                        (stable_id(relation, pid, uid), STORE_GROUP, relation, pid, uid, fact, JsonObject({}), [],
                         now, None, now, None)
                    )  # fmt: skip
        if entities:
            tx.insert_or_update("Entities", ENTITY_COLUMNS, list({row[0]: row for row in entities}.values()))
        if relationships:
            tx.insert_or_update("Relationships", RELATIONSHIP_COLUMNS, relationships)

    def _write_users(self, tx: Transaction, user_ids: Iterable[str], now: datetime) -> None:
        rows = [(user_node(u), user_group(u), "User", f"shopper {u}", None, JsonObject({"user_id": u}), now)
                for u in sorted(user_ids)]  # fmt: skip
        tx.insert_or_update("Entities", ENTITY_COLUMNS, rows)

    def _count_pairs(self, tx: Transaction, deltas: dict[tuple[str, str], int], now: datetime) -> None:
        """Change the basket counts of product pairs; a pair in no order any more is removed."""
        if not deltas:
            return
        ids = {stable_id(BOUGHT_WITH, a, b): (a, b) for a, b in deltas}
        current = {
            row["uuid"]: row["attributes"]
            for row in rows_of(
                tx.execute_sql(
                    "SELECT uuid, attributes FROM Relationships WHERE uuid IN UNNEST(@ids)",
                    params={"ids": list(ids)},
                    param_types={"ids": spanner.param_types.Array(STRING)},
                )
            )
        }
        keep: list[tuple] = []
        gone: list[list[str]] = []
        for uid, (a, b) in ids.items():
            orders = int((current.get(uid) or {}).get("orders", 0)) + deltas[(a, b)]
            if orders <= 0:
                gone.append([uid])
                continue
            keep.append(
                (uid, STORE_GROUP, BOUGHT_WITH, product_node(a), product_node(b), f"{a} is bought with {b}",
                 JsonObject({"products": [a, b], "orders": orders}), [], now, None, now, None)
            )  # fmt: skip
        if keep:
            tx.insert_or_update("Relationships", RELATIONSHIP_COLUMNS, keep)
        if gone:
            tx.delete("Relationships", spanner.KeySet(keys=gone))

    def record_signal(self, signal: SignalRecord, product: ProductInfo) -> bool:
        def work(tx: Transaction) -> bool:
            found = tx.read("Episodes", ("uuid",), spanner.KeySet(keys=[[signal.episode_id]]))
            if list(found):
                return False
            now = datetime.now(UTC)
            self._write_catalog(tx, [product], now)
            self._write_users(tx, [signal.user_id], now)
            content: dict[str, Any] = {"event_id": signal.event_id, "user_id": signal.user_id}
            content["product_id"] = signal.product_id
            content |= {"event_type": signal.event_type, "weight": signal.weight}
            tx.insert(
                "Episodes",
                EPISODE_COLUMNS,
                [(signal.episode_id, user_group(signal.user_id), "signal", f"{signal.event_type} {signal.product_id}",
                  JsonObject(content), [user_node(signal.user_id), product_node(signal.product_id)], signal.at, now)],
            )  # fmt: skip
            return True

        recorded: bool = self._write(work)
        self._known_products.add(product.product_id)
        return recorded

    def write_facts(self, insert: list[Fact], update: list[Fact]) -> None:
        facts = insert + update

        def work(tx: Transaction) -> None:
            tx.insert_or_update(
                "Relationships",
                RELATIONSHIP_COLUMNS,
                [(f.uuid, f.group_id, f.name, f.source, f.target, f.describe(), JsonObject(f.attributes),
                  list(f.episodes), f.valid_at, f.invalid_at, f.created_at or datetime.now(UTC), f.expired_at)
                 for f in facts],
            )  # fmt: skip
            cycles = [f for f in facts if f.name == REORDER_CYCLE]
            if cycles:
                tx.insert_or_update(
                    "ReorderPatterns",
                    ("user_uuid", "product_id", "relationship_uuid", "cycle_days", "confidence", "next_expected",
                     "valid_at", "invalid_at", "expired_at"),
                    [(f.source, f.attributes["product_id"], f.uuid, f.attributes["cycle_days"],
                      f.attributes["confidence"], datetime.fromisoformat(f.attributes["next_expected"]), f.valid_at,
                      f.invalid_at, f.expired_at) for f in cycles],
                )  # fmt: skip

        if facts:
            self._write(work)

    # -- reads -------------------------------------------------------------------------------------
    def history(
        self, user_id: str, products: Collection[str] | None = None
    ) -> tuple[list[OrderRecord], list[SignalRecord]]:
        """The whole history, whatever `products` (the port allows more than asked)."""
        items = self._read(
            "SELECT o.order_id, o.placed_at, o.total, i.product_id, i.quantity, i.price FROM Orders o "
            "JOIN OrderItems i ON i.user_id = o.user_id AND i.order_id = o.order_id "
            "WHERE o.user_id = @u ORDER BY o.placed_at, o.order_id, i.product_id",
            u=user_id,
        )
        orders: dict[str, OrderRecord] = {}
        for row in items:
            line = OrderLine(row["product_id"], int(row["quantity"]), row["price"])
            order = orders.get(row["order_id"])
            lines = (*order.lines, line) if order else (line,)
            orders[row["order_id"]] = OrderRecord(
                row["order_id"], user_id, utc(row["placed_at"]) or datetime.now(UTC), lines, row["total"]
            )
        signals = []
        for row in self._read(
            "SELECT content, valid_at FROM Episodes WHERE group_id = @g AND kind = 'signal'", g=user_group(user_id)
        ):
            c = dict(row["content"])
            at = row["valid_at"].astimezone(UTC)
            signals.append(
                SignalRecord(c["event_id"], user_id, c["product_id"], c["event_type"], float(c["weight"]), at)
            )
        return list(orders.values()), signals

    def facts(self, user_id: str, at: datetime | None = None, products: Collection[str] | None = None) -> list[Fact]:
        sql = f"SELECT {', '.join(RELATIONSHIP_COLUMNS)} FROM Relationships WHERE group_id = @g"
        params: dict[str, Any] = {"g": user_group(user_id)}
        if at is not None:
            sql += " AND valid_at <= @at AND (invalid_at IS NULL OR invalid_at > @at)"
            params["at"] = at
        if products is not None:
            sql += " AND target_uuid IN UNNEST(@targets)"
            params["targets"] = sorted(product_node(p) for p in products)
        return [_fact(row) for row in self._read(sql, **params)]

    def bought_with(self, product_id: str, limit: int = 10) -> list[tuple[str, int]]:
        rows = self._read(
            "SELECT attributes FROM Relationships WHERE source_uuid = @p AND name = @n "
            "UNION ALL SELECT attributes FROM Relationships WHERE target_uuid = @p AND name = @n",
            p=product_node(product_id),
            n=BOUGHT_WITH,
        )
        counts = []
        for row in rows:
            attributes = dict(row["attributes"])
            other = next(p for p in attributes["products"] if p != product_id)
            counts.append((other, int(attributes["orders"])))
        return sorted(counts, key=lambda c: (-c[1], c[0]))[:limit]

    def search_facts(self, user_id: str, text: str, limit: int = 10) -> list[Fact]:
        """Facts whose text contains the most query words (plain GoogleSQL, no search index needed)."""
        words = sorted({w for w in text.lower().split() if len(w) > 1})[:16]
        if not words:
            return []
        score = " + ".join(f"IF(STRPOS(LOWER(fact), @w{i}) > 0, 1, 0)" for i in range(len(words)))
        rows = self._read(
            f"SELECT {', '.join(RELATIONSHIP_COLUMNS)}, ({score}) AS score FROM Relationships "
            "WHERE group_id = @g ORDER BY score DESC, valid_at DESC LIMIT @k",
            g=user_group(user_id),
            k=limit,
            **{f"w{i}": w for i, w in enumerate(words)},
        )
        return [_fact(row) for row in rows if row["score"] > 0]

    # -- deletion ------------------------------------------------------------------------------------
    def delete_user(self, user_id: str) -> int:
        group, node = user_group(user_id), user_node(user_id)

        def work(tx: Transaction) -> int:
            def run(sql: str) -> int:
                return int(tx.execute_update(sql, params={"u": user_id, "g": group, "n": node},
                                             param_types={"u": STRING, "g": STRING, "n": STRING}))  # fmt: skip

            baskets: dict[str, list[str]] = {}
            for row in rows_of(
                tx.execute_sql(
                    "SELECT order_id, product_id FROM OrderItems WHERE user_id = @u",
                    params={"u": user_id},
                    param_types={"u": STRING},
                )
            ):
                baskets.setdefault(row["order_id"], []).append(row["product_id"])
            deltas: dict[tuple[str, str], int] = defaultdict(int)
            for products in baskets.values():  # this shopper's baskets no longer count together
                for key, weight in basket_pairs(products, -1).items():
                    deltas[key] += weight
            self._count_pairs(tx, deltas, datetime.now(UTC))
            removed = run("DELETE FROM OrderItems WHERE user_id = @u")
            removed += run("DELETE FROM Orders WHERE user_id = @u")
            removed += run("DELETE FROM ReorderPatterns WHERE user_uuid = @n")
            removed += run("DELETE FROM Episodes WHERE group_id = @g")
            removed += run("DELETE FROM Relationships WHERE group_id = @g OR source_uuid = @n OR target_uuid = @n")
            removed += run("DELETE FROM Entities WHERE group_id = @g")
            return removed

        removed: int = self._write(work)
        return removed

    def close(self) -> None:
        self.database.close() if hasattr(self.database, "close") else None


def _fact(row: dict[str, Any]) -> Fact:
    return Fact(
        uuid=row["uuid"],
        name=row["name"],
        group_id=row["group_id"],
        source=row["source_uuid"],
        target=row["target_uuid"],
        attributes=json.loads(row["attributes"].serialize()) if row["attributes"] is not None else {},
        valid_at=utc(row["valid_at"]) or datetime.min.replace(tzinfo=UTC),
        invalid_at=utc(row["invalid_at"]),
        created_at=utc(row["created_at"]),
        expired_at=utc(row["expired_at"]),
        episodes=tuple(row["episodes"] or ()),
    )


def _type_of(value: Any) -> Any:
    kinds = {bool: spanner.param_types.BOOL, int: spanner.param_types.INT64, float: spanner.param_types.FLOAT64}
    if isinstance(value, datetime):
        return spanner.param_types.TIMESTAMP
    if isinstance(value, list):
        return spanner.param_types.Array(STRING)
    return kinds.get(type(value), STRING)


if __name__ == "__main__":  # print the migrations for the Terraform / gcloud deployment
    print(";\n\n".join(SCHEMA + PROPERTY_GRAPH) + ";")
