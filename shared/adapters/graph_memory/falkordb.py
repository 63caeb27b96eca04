"""Graph memory in graphiti-core's model on FalkorDB: the embedded default runs the engine as a child
process (`LocalFalkorDB`), so a crash in it never takes serving down; `LEAFLOAF_FALKORDB_URL` points
at a server of one's own instead.

The nodes and relationships are graphiti's FalkorDB schema (Entity and Episodic nodes, RELATES_TO
and MENTIONS relationships, graphiti's range and full-text indexes, embeddings as vecf32), in one
graph: group ids stay properties, as on Neo4j, because graphiti's FalkorDriver would give every group
(every shopper) a graph of its own, about 1.5 MB each before a single fact. Every write is one
Cypher statement (FalkorDB runs each atomically; it has no multi-statement transactions) and an
upsert by stable id, so a write cut short and delivered again converges. Times are ISO strings in UTC
with microseconds (graphiti's format on FalkorDB), so they compare as text.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from collections.abc import Collection, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlparse

import falkordb
import redis
from graphiti_core.driver.driver import GraphProvider
from graphiti_core.driver.falkordb_driver import FalkorDriver
from graphiti_core.edges import EntityEdge
from graphiti_core.graph_queries import get_fulltext_indices, get_range_indices
from graphiti_core.llm_client.client import LLMClient
from graphiti_core.nodes import EntityNode, EpisodicNode
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from shared.adapters.graph_memory.falkordb_server import FalkorDBStartError, LocalFalkorDB
from shared.adapters.graph_memory.graphiti_model import (
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
from shared.domain.memory import Fact, OrderRecord, SignalRecord, product_node, user_group, user_node
from shared.ports.graph_memory import GraphMemory, GraphUnavailable, ProductInfo

log = logging.getLogger(__name__)
GRAPH = "leafloaf"
LABELS = ("Product", "Brand", "Category", "Attribute", "User")  # an Entity's second label (graphiti's labels)

# Entities are created once and left as they are (a product's facts come from the catalog at first sight).
CREATE_ENTITIES = """
UNWIND $rows AS n
MERGE (e:Entity {{uuid: n.uuid}})
ON CREATE SET e:{label}, e.name = n.name, e.group_id = n.group_id, e.labels = n.labels, e.created_at = n.created_at,
    e.name_embedding = vecf32(n.name_embedding), e.summary = n.summary, e.attributes = n.attributes
"""
# What a fact's uuid fixes (its text, so its embedding) is written when it is created; what changes
# (validity, counters, provenance) with every version.
FIXED_PROPERTIES = """
    e.group_id = r.group_id, e.name = r.name, e.fact = r.fact, e.fact_embedding = vecf32(r.fact_embedding),
    e.created_at = r.created_at, e.reference_time = r.reference_time
"""
CHANGING_PROPERTIES = """
    e.episodes = r.episodes, e.expired_at = r.expired_at, e.valid_at = r.valid_at, e.invalid_at = r.invalid_at,
    e.attributes = r.attributes
"""
CREATE_EDGES = f"""
UNWIND $rows AS r
MATCH (s:Entity {{uuid: r.source_node_uuid}})
MATCH (t:Entity {{uuid: r.target_node_uuid}})
MERGE (s)-[e:RELATES_TO {{uuid: r.uuid}}]->(t)
ON CREATE SET {FIXED_PROPERTIES}, {CHANGING_PROPERTIES}
"""
UPDATE_EDGES = f"""
UNWIND $rows AS r
MATCH (:Entity {{uuid: r.source_node_uuid}})-[e:RELATES_TO {{uuid: r.uuid}}]->(:Entity {{uuid: r.target_node_uuid}})
SET {CHANGING_PROPERTIES}
"""
# An episode and its provenance links in one statement: a redelivery never finds an episode without them.
SAVE_EPISODES = """
UNWIND $rows AS r
MERGE (n:Episodic {uuid: r.uuid})
SET n.name = r.name, n.group_id = r.group_id, n.created_at = r.created_at, n.source = r.source,
    n.source_description = r.source_description, n.content = r.content, n.valid_at = r.valid_at,
    n.entity_edges = r.entity_edges
WITH n, r
UNWIND r.mentions AS m
MATCH (x:Entity {uuid: m.target})
MERGE (n)-[e:MENTIONS {uuid: m.uuid}]->(x)
ON CREATE SET e.group_id = r.group_id, e.created_at = r.created_at
"""
BOUGHT_WITH_COUNTS = """
MATCH (p:Entity {uuid: $p})<-[:MENTIONS]-(e:Episodic)-[:MENTIONS]->(q:Product)
WHERE e.source_description = 'order' AND q.uuid <> $p
RETURN q.attributes AS attributes, count(e) AS orders
"""


FACT_FIELDS = (
    "r.uuid, s.uuid, t.uuid, r.group_id, r.name, r.attributes, r.valid_at, r.invalid_at, r.created_at, "
    "r.expired_at, r.episodes"
)


def fact_of(row: list[Any]) -> Fact:
    """A Fact from the FACT_FIELDS of a row."""
    return Fact(
        uuid=row[0],
        source=row[1],
        target=row[2],
        group_id=row[3],
        name=row[4],
        attributes=json.loads(row[5] or "{}"),
        valid_at=parsed_time(row[6]) or datetime.min.replace(tzinfo=UTC),
        invalid_at=parsed_time(row[7]),
        created_at=parsed_time(row[8]),
        expired_at=parsed_time(row[9]),
        episodes=tuple(row[10] or ()),
    )


def _asks(touched: Mapping[str, Collection[str]]) -> list[dict[str, Any]]:
    """Per shopper: their node, group and the product nodes asked about (the batch reads' parameter)."""
    return [
        {"user_id": user, "user": user_node(user), "group": user_group(user), "targets": sorted(map(product_node, ps))}
        for user, ps in sorted(touched.items())
    ]


def _kept(rows: Iterable[list[Any]]) -> Iterable[tuple[str, str, datetime]]:
    """(kind, content, valid_at) of the order and signal episodes among the rows."""
    return ((kind, text, datetime.fromisoformat(at)) for kind, text, at in rows if kind in ("order", "signal"))


def text_time(value: datetime | None) -> str | None:
    """A time as graphiti stores it on FalkorDB; fixed width, so ISO strings order as the times do."""
    return None if value is None else value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f+00:00")


def parsed_time(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


def entity_row(node: EntityNode) -> dict[str, Any]:
    return {
        "uuid": node.uuid,
        "name": node.name,
        "group_id": node.group_id,
        "labels": node.labels,
        "created_at": text_time(node.created_at),
        "name_embedding": [round(x, 5) for x in node.name_embedding or ()],
        "summary": node.summary,
        "attributes": json.dumps(node.attributes),  # FalkorDB keeps no maps as properties
    }


def edge_row(edge: EntityEdge) -> dict[str, Any]:
    return {
        "uuid": edge.uuid,
        "source_node_uuid": edge.source_node_uuid,
        "target_node_uuid": edge.target_node_uuid,
        "group_id": edge.group_id,
        "name": edge.name,
        "fact": edge.fact,
        "fact_embedding": [round(x, 5) for x in edge.fact_embedding or ()],  # sent as Cypher text
        "episodes": edge.episodes,
        "created_at": text_time(edge.created_at),
        "expired_at": text_time(edge.expired_at),
        "valid_at": text_time(edge.valid_at),
        "invalid_at": text_time(edge.invalid_at),
        "reference_time": text_time(edge.reference_time),
        "attributes": json.dumps(edge.attributes),
    }


def changing_row(fact: Fact) -> dict[str, Any]:
    """What an update writes of a fact (see CHANGING_PROPERTIES), with its endpoints to find it."""
    return {
        "uuid": fact.uuid,
        "source_node_uuid": fact.source,
        "target_node_uuid": fact.target,
        "episodes": list(fact.episodes),
        "expired_at": text_time(fact.expired_at),
        "valid_at": text_time(fact.valid_at),
        "invalid_at": text_time(fact.invalid_at),
        "attributes": json.dumps(fact.attributes),
    }


def episode_row(episode: EpisodicNode, targets: Iterable[str]) -> dict[str, Any]:
    return {
        "uuid": episode.uuid,
        "name": episode.name,
        "group_id": episode.group_id,
        "created_at": text_time(episode.created_at),
        "source": episode.source.value,
        "source_description": episode.source_description,
        "content": episode.content,
        "valid_at": text_time(episode.valid_at),
        "entity_edges": episode.entity_edges,
        "mentions": [{"uuid": mention_id(episode.uuid, t), "target": t} for t in targets],
    }


class OneGraphDriver(FalkorDriver):
    """graphiti's FalkorDB driver kept on the one graph: its search goes to a clone per group id."""

    def clone(self, database: str) -> FalkorDriver:
        return self


class FalkorGraphMemory(GraphMemory):
    def __init__(
        self,
        host: str,
        port: int,
        graph: str = GRAPH,
        llm: LLMClient | None = None,
        server: LocalFalkorDB | None = None,
    ) -> None:
        self.host, self.port, self.graph_name = host, port, graph
        self.llm = llm
        self.server = server  # the child process this adapter started, stopped by close()
        self._restart_lock = threading.Lock()
        self._connect(port)
        self._known_products: set[str] = set()
        self._known_lock = threading.Lock()
        self._ensure_schema()

    @classmethod
    def from_settings(cls, settings: Settings) -> FalkorGraphMemory:
        llm = configured_llm(settings)
        if settings.falkordb_url:
            url = urlparse(settings.falkordb_url)
            return cls(url.hostname or "127.0.0.1", url.port or 6379, llm=llm)
        server = LocalFalkorDB(settings.falkordb_path)
        try:
            port = server.start()
        except FalkorDBStartError as exc:
            raise GraphUnavailable(str(exc)) from exc
        return cls("127.0.0.1", port, llm=llm, server=server)

    # -- the engine ----------------------------------------------------------------------------
    def _connect(self, port: int) -> None:
        self.port = port
        # A dropped connection is retried briefly here; past that the caller's delivery is retried later.
        retry = Retry(ExponentialBackoff(cap=0.2, base=0.02), 2)
        self.client = falkordb.FalkorDB(
            host=self.host, port=port, socket_timeout=30, socket_connect_timeout=5, retry=retry
        )
        self.graph = self.client.select_graph(self.graph_name)

    def _query(self, cypher: str, **params: Any) -> list[list[Any]]:
        if any(value is None for value in params.values()):  # an unbound parameter would match everything
            raise ValueError(f"None parameter in graph query: {sorted(k for k, v in params.items() if v is None)}")
        try:
            return self.graph.query(cypher, params).result_set
        except redis.ConnectionError as exc:
            if not self._restarted():
                raise GraphUnavailable(f"FalkorDB at {self.host}:{self.port}: {exc}") from exc
        except (redis.TimeoutError, redis.BusyLoadingError) as exc:
            raise GraphUnavailable(f"FalkorDB at {self.host}:{self.port}: {exc}") from exc
        except redis.ResponseError as exc:
            raise GraphUnavailable(f"FalkorDB refused a statement: {exc}") from exc
        try:  # once more, on the engine started again (every statement is an upsert: safe to repeat)
            return self.graph.query(cypher, params).result_set
        except redis.RedisError as exc:
            raise GraphUnavailable(f"FalkorDB at {self.host}:{self.port}, restarted: {exc}") from exc

    def _restarted(self) -> bool:
        """Start our child engine again when it died (its append-only file has every acknowledged
        write); False when it is not ours or will not start."""
        if self.server is None:
            return False
        with self._restart_lock:
            try:
                port = self.server.start()  # the running one when another thread restarted it already
            except FalkorDBStartError:
                log.exception("graph engine: FalkorDB could not be started again")
                return False
            if port != self.port:
                log.warning("graph engine: FalkorDB was down; started again on port %s", port)
                self._connect(port)
            return True

    def _write(self, cypher: str, rows: list[dict[str, Any]]) -> None:
        if rows:
            self._query(cypher, rows=rows)

    def _ensure_schema(self) -> None:
        """graphiti's range and full-text indexes for FalkorDB (creating one twice is refused: skipped)."""
        for statement in get_range_indices(GraphProvider.FALKORDB) + get_fulltext_indices(GraphProvider.FALKORDB):
            try:
                self.graph.query(statement)
            except redis.ResponseError as exc:
                if "already indexed" not in str(exc) and "already set" not in str(exc):
                    raise GraphUnavailable(f"FalkorDB index: {exc}") from exc
            except redis.ConnectionError as exc:
                raise GraphUnavailable(f"FalkorDB at {self.host}:{self.port}: {exc}") from exc

    def _create_entities(self, nodes: Iterable[EntityNode]) -> None:
        by_label: dict[str, list[dict[str, Any]]] = {}
        for node in {n.uuid: n for n in nodes}.values():
            label = next((x for x in node.labels if x in LABELS), "Entity")
            by_label.setdefault(label, []).append(entity_row(node))
        for label, rows in by_label.items():
            self._write(CREATE_ENTITIES.format(label=label), rows)

    def _catalog(self, products: Iterable[ProductInfo]) -> None:
        """The products' entities and their brand, category and attribute edges, once per instance."""
        with self._known_lock:
            fresh = [p for p in products if p.product_id not in self._known_products]
        if not fresh:
            return
        nodes, edges = catalog_graph(fresh, datetime.now(UTC))
        self._create_entities(nodes)
        self._write(CREATE_EDGES, [edge_row(e) for e in edges])
        with self._known_lock:
            self._known_products.update(p.product_id for p in fresh)

    # -- writes ----------------------------------------------------------------------------------
    def record_orders(self, orders: list[OrderRecord], products: Iterable[ProductInfo]) -> int:
        rows = self._query(
            "UNWIND $ids AS id MATCH (e:Episodic {uuid: id}) RETURN e.uuid, e.content",
            ids=sorted({o.episode_id for o in orders}),
        )
        stored = {uid: json.loads(content)["lines"] for uid, content in rows}
        now = datetime.now(UTC)
        written = order_episodes(orders, stored, now)
        if not written.new_lines:
            return 0
        self._catalog(products)
        self._create_entities(user_entities({o.user_id for o in orders}, now))
        targets: dict[str, list[str]] = {}
        for episode, target in written.mentions:
            targets.setdefault(episode.uuid, []).append(target)
        self._write(SAVE_EPISODES, [episode_row(e, targets.get(uid, ())) for uid, e in written.episodes.items()])
        return written.new_lines

    def record_signal(self, signal: SignalRecord, product: ProductInfo) -> bool:
        if self._query("MATCH (e:Episodic {uuid: $u}) RETURN e.uuid", u=signal.episode_id):
            return False
        now = datetime.now(UTC)
        self._catalog([product])
        self._create_entities(user_entities([signal.user_id], now))
        targets = [user_node(signal.user_id), product_node(signal.product_id)]
        self._write(SAVE_EPISODES, [episode_row(signal_episode(signal, now), targets)])
        return True

    def write_facts(self, insert: list[Fact], update: list[Fact]) -> None:
        """New facts whole (a redelivered one is left as it is), then the changing part of the rest."""
        self._write(CREATE_EDGES, [edge_row(fact_edge(f)) for f in {f.uuid: f for f in insert}.values()])
        self._write(UPDATE_EDGES, [changing_row(f) for f in {f.uuid: f for f in update}.values()])

    # -- reads -------------------------------------------------------------------------------------
    def history(
        self, user_id: str, products: Collection[str] | None = None
    ) -> tuple[list[OrderRecord], list[SignalRecord]]:
        if products is not None:
            return self.histories({user_id: products}).get(user_id, ([], []))
        # From the shopper's node through its index, filtered here: a WHERE on the episodes makes
        # FalkorDB scan every episode first (its plan), a scan that grows with the graph.
        rows = self._query(
            "MATCH (:Entity {uuid: $u})<-[:MENTIONS]-(e:Episodic) RETURN e.source_description, e.content, e.valid_at",
            u=user_node(user_id),
        )
        return history_of(user_id, _kept(rows))

    def histories(
        self, touched: Mapping[str, Collection[str]]
    ) -> dict[str, tuple[list[OrderRecord], list[SignalRecord]]]:
        """Each shopper's episodes that mention one of their touched products, in one statement."""
        rows = self._query(
            "UNWIND $asks AS a MATCH (:Entity {uuid: a.user})<-[:MENTIONS]-(e:Episodic)-[:MENTIONS]->(p:Entity) "
            "WHERE p.uuid IN a.targets RETURN DISTINCT a.user_id, e.source_description, e.content, e.valid_at",
            asks=_asks(touched),
        )
        by_user: dict[str, list[list[Any]]] = {user: [] for user in touched}
        for user_id, *row in rows:
            by_user[user_id].append(row)
        return {user: history_of(user, _kept(found)) for user, found in by_user.items()}

    def facts(self, user_id: str, at: datetime | None = None, products: Collection[str] | None = None) -> list[Fact]:
        # From the shopper's node along its edges. A condition on the edges' group (or times) makes
        # FalkorDB scan its edge index instead (8x slower on the sample): the group is checked here.
        where = []
        params: dict[str, Any] = {"u": user_node(user_id)}
        if at is not None:
            where.append("r.valid_at <= $at AND (r.invalid_at IS NULL OR r.invalid_at > $at)")
            params["at"] = text_time(at)
        if products is not None:
            where.append("t.uuid IN $targets")
            params["targets"] = sorted(product_node(p) for p in products)
        rows = self._query(
            "MATCH (s:Entity {uuid: $u})-[r:RELATES_TO]->(t:Entity) "
            f"{'WHERE ' + ' AND '.join(where) if where else ''} RETURN {FACT_FIELDS}",
            **params,
        )
        group = user_group(user_id)
        return [fact for fact in map(fact_of, rows) if fact.group_id == group]

    def facts_about(self, touched: Mapping[str, Collection[str]]) -> dict[str, list[Fact]]:
        """Each shopper's facts about their touched products, in one statement."""
        rows = self._query(
            "UNWIND $asks AS a MATCH (s:Entity {uuid: a.user})-[r:RELATES_TO]->(t:Entity) "
            f"WHERE t.uuid IN a.targets RETURN a.user_id, {FACT_FIELDS}",
            asks=_asks(touched),
        )
        out: dict[str, list[Fact]] = {user: [] for user in touched}
        for user_id, *row in rows:
            fact = fact_of(row)
            if fact.group_id == user_group(user_id):
                out[user_id].append(fact)
        return out

    def bought_with(self, product_id: str, limit: int = 10) -> list[tuple[str, int]]:
        rows = self._query(BOUGHT_WITH_COUNTS, p=product_node(product_id))
        counts = [(str(json.loads(attributes)["product_id"]), int(orders)) for attributes, orders in rows]
        return sorted(counts, key=lambda c: (-c[1], c[0]))[:limit]

    def search_facts(self, user_id: str, text: str, limit: int = 10) -> list[Fact]:
        """graphiti's hybrid search in the user's facts (graphiti_model.searched_fact_ids)."""

        async def searched() -> list[str]:
            driver = OneGraphDriver(host=self.host, port=self.port, database=self.graph_name)
            try:
                return await searched_fact_ids(driver, user_id, text, max(limit, 50))
            finally:
                await driver.close()

        uuids = asyncio.run(searched())  # graphiti's API is async; a rare call, on its own loop
        return in_found_order(uuids, self.facts(user_id), limit)

    # -- deletion ------------------------------------------------------------------------------------
    def delete_user(self, user_id: str) -> int:
        """The shopper's episodes (with their mentions: baskets stop counting), then their node with
        every fact attached to it; a deletion cut short is finished by the next attempt."""
        group = user_group(user_id)
        removed = 0
        for label in ("Episodic", "Entity"):
            try:
                result = self.graph.query(f"MATCH (n:{label}) WHERE n.group_id = $g DETACH DELETE n", {"g": group})
            except redis.RedisError as exc:
                raise GraphUnavailable(f"FalkorDB: {exc}") from exc
            removed += result.nodes_deleted + result.relationships_deleted
        return removed

    def health(self) -> dict:
        return super().health() | {"engine": "falkordb", "port": self.port, "child_process": self.server is not None}

    def close(self) -> None:
        try:
            self.client.connection.close()
        finally:
            if self.server is not None:
                self.server.stop()
                self.server = None
