"""Graph memory with graphiti-core on an embedded Kuzu database: in-process, no LLM.

Nodes, edges and episodes are graphiti-core's own models (EntityNode, EntityEdge, EpisodicNode,
EpisodicEdge) in graphiti's Kuzu schema, so graphiti's search (BM25 + cosine similarity) works on
them; a deterministic hashing embedder stands in for an embedding model. Writes go in batches
(UNWIND of graphiti's Kuzu save statements): saving one edge at a time costs ~8 ms on Kuzu.
Kuzu drops time zones, so every timestamp is stored as naive UTC.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import warnings
from collections.abc import Collection, Coroutine, Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar, cast

from graphiti_core.driver.kuzu_driver import KuzuDriver
from graphiti_core.edges import EntityEdge, EpisodicEdge
from graphiti_core.llm_client.client import LLMClient
from graphiti_core.nodes import EntityNode, EpisodeType, EpisodicNode

from shared.adapters.graph_memory.graphiti_model import (
    HashEmbedder,
    KeepOrderReranker,
    catalog_graph,
    configured_llm,
    fact_edge,
    history_of,
    in_found_order,
    mention_id,
    order_episodes,
    searched_fact_ids,
    signal_episode,
    user_entities,
)
from shared.config import Settings
from shared.domain.memory import (
    Fact,
    OrderRecord,
    SignalRecord,
    product_node,
    user_group,
    user_node,
)
from shared.ports.graph_memory import GraphMemory, GraphUnavailable, ProductInfo

T = TypeVar("T")
MIN_TIME = datetime.min.replace(tzinfo=UTC)


def episode_row(episode: EpisodicNode) -> dict[str, Any]:
    row = episode.model_dump(include={"uuid", "name", "group_id", "source_description", "content"})
    row |= {"source": episode.source.value, "created_at": naive(episode.created_at)}
    return row | {"valid_at": naive(episode.valid_at), "entity_edges": episode.entity_edges}


def mention_row(episode: EpisodicNode, target: str) -> dict[str, Any]:
    """An EpisodicEdge (MENTIONS): the episode's provenance link to an entity."""
    edge = EpisodicEdge(
        uuid=mention_id(episode.uuid, target),
        group_id=episode.group_id,
        source_node_uuid=episode.uuid,
        target_node_uuid=target,
        created_at=episode.created_at,
    )
    row = edge.model_dump(include={"uuid", "group_id", "source_node_uuid", "target_node_uuid"})
    return row | {"created_at": naive(edge.created_at)}


def naive(value: datetime | None) -> datetime | None:
    return None if value is None else value.astimezone(UTC).replace(tzinfo=None)


def aware(value: datetime | None) -> datetime | None:
    return None if value is None else value.replace(tzinfo=UTC)


# graphiti's Kuzu save statements, batched with UNWIND (same properties as EntityNode.save etc.);
# edges are only created here (callers split off existing ones), so CREATE spares MERGE's path match.
# Casts: in a list of rows, a field that is null (or an empty list) in every row has no type.
SAVE_ENTITIES = """
UNWIND $rows AS n
MERGE (e:Entity {uuid: n.uuid})
SET e.name = n.name, e.group_id = n.group_id, e.labels = CAST(n.labels AS STRING[]),
    e.created_at = CAST(n.created_at AS TIMESTAMP), e.name_embedding = CAST(n.name_embedding AS FLOAT[]),
    e.summary = n.summary, e.attributes = n.attributes
"""
SAVE_EDGES = """
UNWIND $rows AS r
MATCH (s:Entity {uuid: r.source_node_uuid})
MATCH (t:Entity {uuid: r.target_node_uuid})
CREATE (s)-[:RELATES_TO]->(e:RelatesToNode_ {uuid: r.uuid})-[:RELATES_TO]->(t)
SET e.group_id = r.group_id, e.created_at = CAST(r.created_at AS TIMESTAMP), e.name = r.name, e.fact = r.fact,
    e.fact_embedding = CAST(r.fact_embedding AS FLOAT[]), e.episodes = CAST(r.episodes AS STRING[]),
    e.expired_at = CAST(r.expired_at AS TIMESTAMP), e.valid_at = CAST(r.valid_at AS TIMESTAMP),
    e.invalid_at = CAST(r.invalid_at AS TIMESTAMP), e.reference_time = CAST(r.reference_time AS TIMESTAMP),
    e.attributes = r.attributes
"""
# Kuzu 0.11.3 crashes (SIGSEGV) when one statement changes text under a full-text index, or
# deletes, in several rows of an indexed table. So: rows are created in bulk, existing edges only
# get their non-indexed properties updated in bulk (a fact's text is fixed by its uuid), and
# deletions go one row per statement.
UPDATE_EDGES = """
UNWIND $rows AS r
MATCH (e:RelatesToNode_ {uuid: r.uuid})
SET e.attributes = r.attributes, e.episodes = CAST(r.episodes AS STRING[]),
    e.created_at = CAST(r.created_at AS TIMESTAMP), e.valid_at = CAST(r.valid_at AS TIMESTAMP),
    e.invalid_at = CAST(r.invalid_at AS TIMESTAMP), e.expired_at = CAST(r.expired_at AS TIMESTAMP)
"""
SAVE_EPISODE = """
MERGE (n:Episodic {uuid: $uuid})
SET n.name = $name, n.group_id = $group_id, n.created_at = $created_at, n.source = $source,
    n.source_description = $source_description, n.content = $content, n.valid_at = $valid_at,
    n.entity_edges = $entity_edges
"""
CREATE_EPISODES = """
UNWIND $rows AS r
CREATE (n:Episodic {uuid: r.uuid, name: r.name, group_id: r.group_id,
    created_at: CAST(r.created_at AS TIMESTAMP), source: r.source, source_description: r.source_description,
    content: r.content, valid_at: CAST(r.valid_at AS TIMESTAMP), entity_edges: CAST(r.entity_edges AS STRING[])})
"""
SAVE_MENTIONS = """
UNWIND $rows AS m
MATCH (episode:Episodic {uuid: m.source_node_uuid})
MATCH (node:Entity {uuid: m.target_node_uuid})
MERGE (episode)-[e:MENTIONS {uuid: m.uuid}]->(node)
SET e.group_id = m.group_id, e.created_at = CAST(m.created_at AS TIMESTAMP)
"""
# bought_with on Kuzu is read off the graph, not written: two products of one basket are joined by
# the order episode that mentions both (product <-MENTIONS- order -MENTIONS-> product), and counting
# those episodes gives the pair's basket count. Writing a counter per pair (hundreds of thousands
# on the Instacart sample) made ingest slow down as it went: each new relationship of a popular
# product costs more in Kuzu's adjacency storage (0.15 ms a pair at first, 1.2 ms after 60,000
# orders lines). Read-time counts are idempotent and forget a deleted shopper's baskets by themselves.
BOUGHT_WITH_COUNTS = """
MATCH (p:Entity {uuid: $p})<-[:MENTIONS]-(e:Episodic)-[:MENTIONS]->(q:Entity)
WHERE e.source_description = 'order' AND q.uuid <> $p AND list_contains(q.labels, 'Product')
RETURN q.attributes AS attributes, count(*) AS orders
"""
EDGE_FIELDS = """
r.uuid AS uuid, s.uuid AS source, t.uuid AS target, r.group_id AS group_id, r.name AS name,
r.attributes AS attributes, r.valid_at AS valid_at, r.invalid_at AS invalid_at,
r.created_at AS created_at, r.expired_at AS expired_at, r.episodes AS episodes
"""


def entity_row(node: EntityNode) -> dict[str, Any]:
    return {
        "uuid": node.uuid,
        "name": node.name,
        "group_id": node.group_id,
        "labels": node.labels,
        "created_at": naive(node.created_at),
        "name_embedding": node.name_embedding,
        "summary": node.summary,
        "attributes": json.dumps(node.attributes),
    }


def edge_row(edge: EntityEdge) -> dict[str, Any]:
    return {
        "uuid": edge.uuid,
        "source_node_uuid": edge.source_node_uuid,
        "target_node_uuid": edge.target_node_uuid,
        "group_id": edge.group_id,
        "created_at": naive(edge.created_at),
        "name": edge.name,
        "fact": edge.fact,
        "fact_embedding": edge.fact_embedding,
        "episodes": edge.episodes,
        "expired_at": naive(edge.expired_at),
        "valid_at": naive(edge.valid_at),
        "invalid_at": naive(edge.invalid_at),
        "reference_time": naive(edge.reference_time),
        "attributes": json.dumps(edge.attributes),
    }


class KuzuGraphMemory(GraphMemory):
    """One Kuzu database file per instance (Kuzu lets one process open it at a time)."""

    def __init__(self, path: str | Path, llm: LLMClient | None = None) -> None:
        self.path = str(path)
        self.llm = llm
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        # graphiti's API is async; one private loop thread runs it for this synchronous port.
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="kuzu-graph", daemon=True)
        self._thread.start()
        self._lock = threading.RLock()
        self._known_products: set[str] = set()
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)  # graphiti warns Kuzu is unmaintained
                self.driver = KuzuDriver(db=self.path)
        except RuntimeError as exc:
            self._loop.call_soon_threadsafe(self._loop.stop)
            raise GraphUnavailable(f"cannot open {self.path}: {exc}") from exc
        self._run(self._ensure_schema())

    @classmethod
    def from_settings(cls, settings: Settings) -> KuzuGraphMemory:
        return cls(settings.kuzu_path, llm=configured_llm(settings))

    def _run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        if not self._loop.is_running():  # closed: a stopped loop would never answer
            coroutine.close()
            raise GraphUnavailable(f"{self.path} is closed")
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result()

    def _query(self, cypher: str, **params: Any) -> list[dict[str, Any]]:
        # The driver drops None parameters (an unbound $x then matches everything): refuse them.
        if any(value is None for value in params.values()):
            raise ValueError(f"None parameter in graph query: {sorted(k for k, v in params.items() if v is None)}")
        records, _, _ = self._run(self.driver.execute_query(cypher, **params))
        return cast(list[dict[str, Any]], records or [])

    async def _ensure_schema(self) -> None:
        """graphiti's BM25 indexes; creating them twice is an error on Kuzu, so look first."""
        rows, _, _ = await self.driver.execute_query("CALL SHOW_INDEXES() RETURN *")
        names = {r["index_name"] for r in cast(list[dict[str, Any]], rows or [])}
        if not names >= {"edge_name_and_fact", "node_name_and_summary"}:
            await self.driver.graph_ops.build_indices_and_constraints(self.driver)

    def _transaction(self, statements: list[tuple[str, dict[str, Any]]]) -> None:
        self._query("BEGIN TRANSACTION")
        try:
            for cypher, params in statements:
                if params.get("rows", True):  # skip empty batches
                    self._query(cypher, **params)
            self._query("COMMIT")
        except Exception:
            with contextlib.suppress(RuntimeError):  # a failed statement may have ended it already
                self._query("ROLLBACK")
            raise

    def _existing(self, table: str, uuids: Iterable[str]) -> set[str]:
        ids = sorted(set(uuids))
        if not ids:
            return set()
        # One primary-key lookup per id: `uuid IN $ids` scans the whole table on Kuzu.
        rows = self._query(f"UNWIND $ids AS id MATCH (n:{table} {{uuid: id}}) RETURN n.uuid AS uuid", ids=ids)
        return {row["uuid"] for row in rows}

    def _entity_statements(self, nodes: Iterable[EntityNode]) -> list[tuple[str, dict[str, Any]]]:
        """Create the entities that do not exist yet (existing ones are left as they are)."""
        nodes = list({n.uuid: n for n in nodes}.values())
        existing = self._existing("Entity", (n.uuid for n in nodes))
        return [(SAVE_ENTITIES, {"rows": [entity_row(n) for n in nodes if n.uuid not in existing]})]

    def _edge_statements(self, edges: Iterable[EntityEdge], update: bool = True) -> list[tuple[str, dict[str, Any]]]:
        """Create new edges; for existing ones update validity and attributes (or leave them)."""
        edges = list({e.uuid: e for e in edges}.values())
        existing = self._existing("RelatesToNode_", (e.uuid for e in edges))
        statements = [(SAVE_EDGES, {"rows": [edge_row(e) for e in edges if e.uuid not in existing]})]
        if update:
            statements.append((UPDATE_EDGES, {"rows": [edge_row(e) for e in edges if e.uuid in existing]}))
        return statements

    @staticmethod
    def _delete_statements(table: str, uuids: Iterable[str]) -> list[tuple[str, dict[str, Any]]]:
        return [(f"MATCH (n:{table} {{uuid: $u}}) DETACH DELETE n", {"u": uid}) for uid in sorted(set(uuids))]

    # -- entities ------------------------------------------------------------------------------
    def _catalog_statements(self, products: Iterable[ProductInfo]) -> list[tuple[str, dict[str, Any]]]:
        """Product, brand, category and attribute entities with the edges between them (once per instance)."""
        fresh = (p for p in products if p.product_id not in self._known_products)
        nodes, edges = catalog_graph(fresh, datetime.now(UTC))
        return self._entity_statements(nodes) + self._edge_statements(edges, update=False)

    def _users_statements(self, user_ids: Iterable[str]) -> list[tuple[str, dict[str, Any]]]:
        return self._entity_statements(user_entities(user_ids, datetime.now(UTC)))

    # -- writes ----------------------------------------------------------------------------------
    def record_orders(self, orders: list[OrderRecord], products: Iterable[ProductInfo]) -> int:
        products = list(products)
        with self._lock:
            try:
                stored = {
                    row["uuid"]: json.loads(row["content"])
                    for row in self._query(
                        "UNWIND $ids AS id MATCH (e:Episodic {uuid: id}) RETURN e.uuid AS uuid, e.content AS content",
                        ids=sorted({o.episode_id for o in orders}),
                    )
                }
                written = order_episodes(orders, {uid: c["lines"] for uid, c in stored.items()}, datetime.now(UTC))
                if not written.new_lines:
                    return 0
                episodes = written.episodes
                mentions = [mention_row(episode, target) for episode, target in written.mentions]
                statements = self._catalog_statements(products)
                statements += self._users_statements({o.user_id for o in orders})
                fresh = [episode_row(e) for uid, e in episodes.items() if uid not in stored]
                statements.append((CREATE_EPISODES, {"rows": fresh}))
                # An order completed by a later message: its text grows, one row per statement.
                statements += [(SAVE_EPISODE, episode_row(e)) for uid, e in episodes.items() if uid in stored]
                statements.append((SAVE_MENTIONS, {"rows": mentions}))
                self._transaction(statements)
                self._known_products.update(p.product_id for p in products)
            except RuntimeError as exc:
                raise GraphUnavailable(str(exc)) from exc
        return written.new_lines

    def record_signal(self, signal: SignalRecord, product: ProductInfo) -> bool:
        with self._lock:
            try:
                if self._query("MATCH (e:Episodic {uuid: $u}) RETURN e.uuid AS uuid", u=signal.episode_id):
                    return False
                episode = signal_episode(signal, datetime.now(UTC))
                statements = self._catalog_statements([product]) + self._users_statements([signal.user_id])
                statements.append((CREATE_EPISODES, {"rows": [episode_row(episode)]}))
                targets = [user_node(signal.user_id), product_node(signal.product_id)]
                statements.append((SAVE_MENTIONS, {"rows": [mention_row(episode, t) for t in targets]}))
                self._transaction(statements)
                self._known_products.add(product.product_id)
            except RuntimeError as exc:
                raise GraphUnavailable(str(exc)) from exc
        return True

    def write_facts(self, insert: list[Fact], update: list[Fact]) -> None:
        with self._lock:
            try:
                self._transaction(self._edge_statements(fact_edge(f) for f in insert + update))
            except RuntimeError as exc:
                raise GraphUnavailable(str(exc)) from exc

    # -- reads -------------------------------------------------------------------------------------
    def history(
        self, user_id: str, products: Collection[str] | None = None
    ) -> tuple[list[OrderRecord], list[SignalRecord]]:
        """The whole history, whatever `products` (the port allows more than asked)."""
        rows = self._query(  # from the shopper's node: a scan by group would read every episode
            "MATCH (e:Episodic)-[:MENTIONS]->(:Entity {uuid: $u}) WHERE e.source_description IN ['order', 'signal'] "
            "RETURN e.source_description AS kind, e.content AS content, e.valid_at AS at",
            u=user_node(user_id),
        )
        return history_of(user_id, ((row["kind"], row["content"], aware(row["at"]) or MIN_TIME) for row in rows))

    def facts(self, user_id: str, at: datetime | None = None, products: Collection[str] | None = None) -> list[Fact]:
        # From the shopper's node (adjacency), not a scan of every relationship by group.
        where = ["r.group_id = $g"]
        params: dict[str, Any] = {"u": user_node(user_id), "g": user_group(user_id)}
        if at is not None:
            where.append("r.valid_at <= $at AND (r.invalid_at IS NULL OR r.invalid_at > $at)")
            params["at"] = naive(at)
        if products is not None:
            where.append("t.uuid IN $targets")
            params["targets"] = sorted(product_node(p) for p in products)
        rows = self._query(
            "MATCH (s:Entity {uuid: $u})-[:RELATES_TO]->(r:RelatesToNode_)-[:RELATES_TO]->(t:Entity) "
            f"WHERE {' AND '.join(where)} RETURN {EDGE_FIELDS}",
            **params,
        )
        return [
            Fact(
                uuid=row["uuid"],
                name=row["name"],
                group_id=row["group_id"],
                source=row["source"],
                target=row["target"],
                attributes=json.loads(row["attributes"] or "{}"),
                valid_at=aware(row["valid_at"]) or datetime.min.replace(tzinfo=UTC),
                invalid_at=aware(row["invalid_at"]),
                created_at=aware(row["created_at"]),
                expired_at=aware(row["expired_at"]),
                episodes=tuple(row["episodes"] or ()),
            )
            for row in rows
        ]

    def bought_with(self, product_id: str, limit: int = 10) -> list[tuple[str, int]]:
        rows = self._query(BOUGHT_WITH_COUNTS, p=product_node(product_id))
        counts = [(str(json.loads(row["attributes"])["product_id"]), int(row["orders"])) for row in rows]
        return sorted(counts, key=lambda c: (-c[1], c[0]))[:limit]

    def search_facts(self, user_id: str, text: str, limit: int = 10) -> list[Fact]:
        """graphiti's hybrid search in the user's facts (graphiti_model.searched_fact_ids)."""
        depth = max(limit, 200)  # graphiti's BM25 on Kuzu filters groups after its top 2*limit
        with self._lock:
            uuids = self._run(searched_fact_ids(self.driver, user_id, text, depth))
        return in_found_order(uuids, self.facts(user_id), limit)

    def add_text(self, user_id: str, text: str, source: str, at: datetime) -> None:
        """graphiti's add_episode: the configured LLM extracts entities and facts from the text.
        Embeddings stay the hashing ones, so the vectors of the whole graph keep one size."""
        if self.llm is None:
            super().add_text(user_id, text, source, at)  # refuses: no LLM, no faked extraction
            return
        from graphiti_core import Graphiti

        graphiti = Graphiti(
            graph_driver=self.driver, llm_client=self.llm, embedder=HashEmbedder(), cross_encoder=KeepOrderReranker()
        )
        self.driver._database = "kuzu"  # read by add_episode; missing on Kuzu (graphiti-core 0.31.1)
        with self._lock:
            self._run(
                graphiti.add_episode(
                    name=f"{source} by {user_id}",
                    episode_body=text,
                    source=EpisodeType.text,
                    source_description=source,
                    reference_time=at,
                    group_id=user_group(user_id),
                )
            )

    # -- deletion ------------------------------------------------------------------------------------
    def delete_user(self, user_id: str) -> int:
        group = user_group(user_id)
        with self._lock:
            try:
                statements: list[tuple[str, dict[str, Any]]] = []  # bought_with goes with the episodes
                doomed = {
                    table: [
                        row["uuid"]
                        for row in self._query(
                            f"MATCH (n:{table}) WHERE n.group_id = $g RETURN n.uuid AS uuid", g=group
                        )
                    ]
                    for table in ("Episodic", "RelatesToNode_", "Entity")
                }
                attached = self._query(  # edges of other groups that end at the shopper's node
                    "MATCH (n:Entity {uuid: $u})-[:RELATES_TO]-(r:RelatesToNode_) RETURN r.uuid AS uuid",
                    u=user_node(user_id),
                )
                doomed["RelatesToNode_"] += [row["uuid"] for row in attached]
                for table, uuids in doomed.items():
                    statements += self._delete_statements(table, uuids)
                removed = sum(len(set(uuids)) for uuids in doomed.values())
                self._transaction(statements)
            except RuntimeError as exc:
                raise GraphUnavailable(str(exc)) from exc
        return removed

    def close(self) -> None:
        with self._lock:
            if self._loop.is_running():
                self.driver.client.close()
                self.driver.db.close()
                self._loop.call_soon_threadsafe(self._loop.stop)
                self._thread.join(timeout=10)
