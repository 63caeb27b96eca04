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
import hashlib
import itertools
import json
import math
import os
import re
import threading
import warnings
from collections.abc import Collection, Coroutine, Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar, cast

os.environ.setdefault("GRAPHITI_TELEMETRY_ENABLED", "false")
os.environ.setdefault("EMBEDDING_DIM", "256")  # read by graphiti at import

from graphiti_core.cross_encoder.client import CrossEncoderClient
from graphiti_core.driver.kuzu_driver import KuzuDriver
from graphiti_core.edges import EntityEdge, EpisodicEdge
from graphiti_core.embedder.client import EmbedderClient
from graphiti_core.graphiti_types import GraphitiClients
from graphiti_core.llm_client.client import LLMClient
from graphiti_core.llm_client.config import LLMConfig
from graphiti_core.nodes import EntityNode, EpisodeType, EpisodicNode
from graphiti_core.search.search import search
from graphiti_core.search.search_config import EdgeReranker, EdgeSearchConfig, EdgeSearchMethod, SearchConfig
from graphiti_core.search.search_filters import SearchFilters
from graphiti_core.tracer import NoOpTracer

from shared.config import Settings
from shared.domain.memory import (
    STORE_GROUP,
    Fact,
    OrderLine,
    OrderRecord,
    SignalRecord,
    new_lines,
    product_node,
    stable_id,
    user_group,
    user_node,
)
from shared.ports.graph_memory import GraphMemory, GraphUnavailable, ProductInfo, TextMemoryUnavailable

T = TypeVar("T")
DIM = 256
_TOKENS = re.compile(r"[a-z0-9]+")


def hash_embedding(text: str, dim: int = DIM) -> list[float]:
    """A deterministic bag of tokens and bigrams hashed into `dim` signed buckets, L2-normalised."""
    vector = [0.0] * dim
    tokens = _TOKENS.findall(text.lower())
    for feature in tokens + [f"{a}_{b}" for a, b in itertools.pairwise(tokens)]:
        digest = hashlib.blake2b(feature.encode(), digest_size=8).digest()
        vector[int.from_bytes(digest[:4], "little") % dim] += 1.0 if digest[4] & 1 else -1.0
    norm = math.sqrt(sum(x * x for x in vector)) or 1.0
    return [x / norm for x in vector]


class HashEmbedder(EmbedderClient):
    """graphiti's embedder interface over `hash_embedding`: offline and reproducible."""

    async def create(self, input_data: Any) -> list[float]:
        text = input_data if isinstance(input_data, str) else next(iter(input_data))
        return hash_embedding(str(text))

    async def create_batch(self, input_data_list: list[str]) -> list[list[float]]:
        return [hash_embedding(text) for text in input_data_list]


class KeepOrderReranker(CrossEncoderClient):
    async def rank(self, query: str, passages: list[str]) -> list[tuple[str, float]]:
        return [(p, 1.0 - i / max(len(passages), 1)) for i, p in enumerate(passages)]


class NoLLMClient(LLMClient):
    """Stands where graphiti wants an LLM client; refuses every call (no LLM on this path)."""

    def __init__(self) -> None:
        super().__init__(LLMConfig(api_key="none", model="none"), cache=False)

    async def _generate_response(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        raise TextMemoryUnavailable("no LLM is configured for graph memory")


def configured_llm(settings: Settings) -> LLMClient | None:
    """The LLM for free-text memory, or None. A configuration that cannot work fails at start."""
    if not settings.graph_llm:
        return None
    if settings.graph_llm != "gemini":
        raise ValueError(f"LEAFLOAF_GRAPH_LLM={settings.graph_llm!r}: only 'gemini' is supported")
    key = os.environ.get("GOOGLE_API_KEY")
    if not key:
        raise ValueError("LEAFLOAF_GRAPH_LLM=gemini needs GOOGLE_API_KEY (Secret Manager in production)")
    try:
        from graphiti_core.llm_client.gemini_client import GeminiClient
    except ImportError as exc:
        raise ValueError("LEAFLOAF_GRAPH_LLM=gemini needs 'pip install graphiti-core[google-genai]==0.31.1'") from exc
    config = (
        LLMConfig(api_key=key, model=settings.graph_llm_model) if settings.graph_llm_model else LLMConfig(api_key=key)
    )
    return GeminiClient(config=config)


def episode_row(episode: EpisodicNode) -> dict[str, Any]:
    row = episode.model_dump(include={"uuid", "name", "group_id", "source_description", "content"})
    row |= {"source": episode.source.value, "created_at": naive(episode.created_at)}
    return row | {"valid_at": naive(episode.valid_at), "entity_edges": episode.entity_edges}


def mention_row(episode: EpisodicNode, target: str) -> dict[str, Any]:
    """An EpisodicEdge (MENTIONS): the episode's provenance link to an entity."""
    edge = EpisodicEdge(
        uuid=stable_id("mentions", episode.uuid, target),
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


def fact_edge(fact: Fact) -> EntityEdge:
    text = fact.describe()
    return EntityEdge(
        uuid=fact.uuid,
        group_id=fact.group_id,
        source_node_uuid=fact.source,
        target_node_uuid=fact.target,
        name=fact.name,
        fact=text,
        fact_embedding=hash_embedding(text),
        episodes=list(fact.episodes),
        valid_at=fact.valid_at,
        invalid_at=fact.invalid_at,
        created_at=fact.created_at or datetime.now(UTC),
        expired_at=fact.expired_at,
        reference_time=fact.valid_at,
        attributes=fact.attributes,
    )


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
        now = datetime.now(UTC)
        nodes: dict[str, EntityNode] = {}
        edges: list[EntityEdge] = []
        for product in products:
            if product.product_id in self._known_products:
                continue
            pid = product_node(product.product_id)
            nodes[pid] = EntityNode(
                uuid=pid,
                name=product.name,
                group_id=STORE_GROUP,
                labels=["Product"],
                summary=f"{product.name} ({product.brand or 'unknown brand'}, {product.category or 'uncategorised'})",
                attributes={"product_id": product.product_id, "brand": product.brand, "category": product.category},
                name_embedding=hash_embedding(product.name),
                created_at=now,
            )
            related = [("Brand", "made_by", product.brand), ("Category", "in_category", product.category)]
            related += [("Attribute", "has_attribute", a) for a in product.attributes]
            for label, relation, value in related:
                if not value:
                    continue
                uid = stable_id(label, value.lower())
                nodes.setdefault(
                    uid,
                    EntityNode(
                        uuid=uid,
                        name=value,
                        group_id=STORE_GROUP,
                        labels=[label],
                        name_embedding=hash_embedding(value),
                        created_at=now,
                    ),
                )
                fact = f"{product.name} {relation.replace('_', ' ')} {value}"
                edges.append(
                    EntityEdge(
                        uuid=stable_id(relation, pid, uid),
                        group_id=STORE_GROUP,
                        source_node_uuid=pid,
                        target_node_uuid=uid,
                        name=relation,
                        fact=fact,
                        fact_embedding=hash_embedding(fact),
                        episodes=[],
                        valid_at=now,
                        created_at=now,
                        attributes={},
                    )
                )
        return self._entity_statements(nodes.values()) + self._edge_statements(edges, update=False)

    def _users_statements(self, user_ids: Iterable[str]) -> list[tuple[str, dict[str, Any]]]:
        nodes = [
            EntityNode(
                uuid=user_node(user_id),
                name=f"shopper {user_id}",
                group_id=user_group(user_id),
                labels=["User"],
                attributes={"user_id": user_id},
                name_embedding=hash_embedding(f"shopper {user_id}"),
                created_at=datetime.now(UTC),
            )
            for user_id in sorted(user_ids)
        ]
        return self._entity_statements(nodes)

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
                recorded = {uid: {line["product_id"] for line in c["lines"]} for uid, c in stored.items()}
                added, _ = new_lines(orders, recorded)
                if not added:
                    return 0
                now = datetime.now(UTC)
                episodes: dict[str, EpisodicNode] = {}
                mentions: list[dict[str, Any]] = []
                for order in orders:
                    if order.episode_id not in added or order.episode_id in episodes:
                        continue
                    before = stored.get(order.episode_id, {}).get("lines", [])
                    lines = before + [vars(line) for line in added[order.episode_id]]
                    content = {"order_id": order.order_id, "user_id": order.user_id, "total": order.total}
                    episodes[order.episode_id] = EpisodicNode(
                        uuid=order.episode_id,
                        name=f"order {order.order_id}",
                        group_id=user_group(order.user_id),
                        source=EpisodeType.json,
                        source_description="order",
                        content=json.dumps(content | {"lines": lines}),
                        valid_at=order.placed_at,
                        created_at=now,
                        entity_edges=[],
                    )
                    targets = [user_node(order.user_id)] + [product_node(line["product_id"]) for line in lines]
                    mentions += [mention_row(episodes[order.episode_id], target) for target in targets]
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
        return sum(len(lines) for lines in added.values())

    def record_signal(self, signal: SignalRecord, product: ProductInfo) -> bool:
        with self._lock:
            try:
                if self._query("MATCH (e:Episodic {uuid: $u}) RETURN e.uuid AS uuid", u=signal.episode_id):
                    return False
                content: dict[str, Any] = {"event_id": signal.event_id, "user_id": signal.user_id}
                content["product_id"] = signal.product_id
                content |= {"event_type": signal.event_type, "weight": signal.weight}
                episode = EpisodicNode(
                    uuid=signal.episode_id,
                    name=f"{signal.event_type} {signal.product_id}",
                    group_id=user_group(signal.user_id),
                    source=EpisodeType.json,
                    source_description="signal",
                    content=json.dumps(content),
                    valid_at=signal.at,
                    created_at=datetime.now(UTC),
                    entity_edges=[],
                )
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
    def history(self, user_id: str) -> tuple[list[OrderRecord], list[SignalRecord]]:
        rows = self._query(  # from the shopper's node: a scan by group would read every episode
            "MATCH (e:Episodic)-[:MENTIONS]->(:Entity {uuid: $u}) WHERE e.source_description IN ['order', 'signal'] "
            "RETURN e.source_description AS kind, e.content AS content, e.valid_at AS at",
            u=user_node(user_id),
        )
        orders, signals = [], []
        for row in rows:
            content, at = json.loads(row["content"]), aware(row["at"])
            assert at is not None
            if row["kind"] == "order":
                lines = tuple(OrderLine(ln["product_id"], ln["quantity"], ln.get("price")) for ln in content["lines"])
                orders.append(OrderRecord(content["order_id"], user_id, at, lines, content.get("total")))
            else:
                signals.append(
                    SignalRecord(
                        content["event_id"],
                        user_id,
                        content["product_id"],
                        content["event_type"],
                        content["weight"],
                        at,
                    )
                )
        return orders, signals

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
        """graphiti's hybrid search (BM25 + cosine over the hashing embedder, RRF) in the user's facts."""
        config = SearchConfig(
            edge_config=EdgeSearchConfig(
                search_methods=[EdgeSearchMethod.bm25, EdgeSearchMethod.cosine_similarity],
                reranker=EdgeReranker.rrf,
                sim_min_score=0.2,  # hashing embeddings score lower than a model's
            ),
            limit=max(limit, 200),  # graphiti's BM25 on Kuzu filters groups after its top 2*limit
        )
        clients = GraphitiClients(
            driver=self.driver,
            llm_client=NoLLMClient(),
            embedder=HashEmbedder(),
            cross_encoder=KeepOrderReranker(),
            tracer=NoOpTracer(),
        )
        with self._lock:
            results = self._run(search(clients, text, [user_group(user_id)], config, SearchFilters()))
        uuids = [edge.uuid for edge in results.edges][:limit]
        by_id = {f.uuid: f for f in self.facts(user_id)}
        return [by_id[u] for u in uuids if u in by_id]

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
