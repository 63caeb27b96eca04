"""Graph memory in graphiti-core's own model, whatever engine stores it: the entities, episodes,
mentions and relationship edges an order, a signal or a product becomes, the offline embedder and
reranker graphiti's search is given, and the LLM free-text memory needs. No engine I/O here.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from graphiti_core.cross_encoder.client import CrossEncoderClient
from graphiti_core.driver.driver import GraphDriver
from graphiti_core.edges import EntityEdge
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
from shared.ports.graph_memory import ProductInfo, TextMemoryUnavailable

DIM = 256  # EMBEDDING_DIM (set in this package's __init__, before graphiti is imported)
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


async def searched_fact_ids(driver: GraphDriver, user_id: str, text: str, depth: int) -> list[str]:
    """graphiti's hybrid search (BM25 + cosine over the hashing embedder, RRF) in the user's facts:
    the uuids of the first `depth` edges found."""
    config = SearchConfig(
        edge_config=EdgeSearchConfig(
            search_methods=[EdgeSearchMethod.bm25, EdgeSearchMethod.cosine_similarity],
            reranker=EdgeReranker.rrf,
            sim_min_score=0.2,  # hashing embeddings score lower than a model's
        ),
        limit=depth,
    )
    clients = GraphitiClients(
        driver=driver,
        llm_client=NoLLMClient(),
        embedder=HashEmbedder(),
        cross_encoder=KeepOrderReranker(),
        tracer=NoOpTracer(),
    )
    results = await search(clients, text, [user_group(user_id)], config, SearchFilters())
    return [edge.uuid for edge in results.edges]


def in_found_order(uuids: Iterable[str], facts: Iterable[Fact], limit: int) -> list[Fact]:
    """The facts with these uuids, in the search's order, at most `limit`."""
    by_id = {f.uuid: f for f in facts}
    return [by_id[u] for u in list(uuids)[:limit] if u in by_id]


def catalog_graph(products: Iterable[ProductInfo], now: datetime) -> tuple[list[EntityNode], list[EntityEdge]]:
    """Product, brand, category and attribute entities, with the edges from each product to the others."""
    nodes: dict[str, EntityNode] = {}
    edges: list[EntityEdge] = []
    for product in products:
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
    return list(nodes.values()), edges


def user_entities(user_ids: Iterable[str], now: datetime) -> list[EntityNode]:
    return [
        EntityNode(
            uuid=user_node(user_id),
            name=f"shopper {user_id}",
            group_id=user_group(user_id),
            labels=["User"],
            attributes={"user_id": user_id},
            name_embedding=hash_embedding(f"shopper {user_id}"),
            created_at=now,
        )
        for user_id in sorted(set(user_ids))
    ]


@dataclass(frozen=True)
class OrderEpisodes:
    """What a batch of orders writes: each order episode with every line recorded so far, the new
    ones' provenance links, and how many lines were new."""

    episodes: dict[str, EpisodicNode]  # uuid -> episode (an order completed by a later message: whole again)
    mentions: list[tuple[EpisodicNode, str]]  # (episode, entity uuid) for the episodes written now
    new_lines: int


def order_episodes(orders: list[OrderRecord], stored: dict[str, list[dict[str, Any]]], now: datetime) -> OrderEpisodes:
    """The episodes of `orders` given the lines already stored per episode uuid (`stored`)."""
    recorded = {uid: {line["product_id"] for line in lines} for uid, lines in stored.items()}
    added, _ = new_lines(orders, recorded)
    episodes: dict[str, EpisodicNode] = {}
    mentions: list[tuple[EpisodicNode, str]] = []
    for order in orders:
        if order.episode_id not in added or order.episode_id in episodes:
            continue
        lines = stored.get(order.episode_id, []) + [vars(line) for line in added[order.episode_id]]
        content = {"order_id": order.order_id, "user_id": order.user_id, "total": order.total, "lines": lines}
        episode = episodes[order.episode_id] = json_episode(
            order.episode_id, f"order {order.order_id}", order.user_id, "order", content, order.placed_at, now
        )
        targets = [user_node(order.user_id)] + [product_node(line["product_id"]) for line in lines]
        mentions += [(episode, target) for target in targets]
    return OrderEpisodes(episodes, mentions, sum(len(lines) for lines in added.values()))


def signal_episode(signal: SignalRecord, now: datetime) -> EpisodicNode:
    content: dict[str, Any] = {"event_id": signal.event_id, "user_id": signal.user_id, "product_id": signal.product_id}
    content |= {"event_type": signal.event_type, "weight": signal.weight}
    name = f"{signal.event_type} {signal.product_id}"
    return json_episode(signal.episode_id, name, signal.user_id, "signal", content, signal.at, now)


def json_episode(
    uuid: str, name: str, user_id: str, kind: str, content: dict[str, Any], at: datetime, now: datetime
) -> EpisodicNode:
    """A shopper's episode of `kind` ("order" or "signal"), its content as JSON."""
    return EpisodicNode(
        uuid=uuid,
        name=name,
        group_id=user_group(user_id),
        source=EpisodeType.json,
        source_description=kind,
        content=json.dumps(content),
        valid_at=at,
        created_at=now,
        entity_edges=[],
    )


def mention_id(episode_uuid: str, target: str) -> str:
    return stable_id("mentions", episode_uuid, target)


def history_of(user_id: str, rows: Iterable[tuple[str, str, datetime]]) -> tuple[list[OrderRecord], list[SignalRecord]]:
    """The shopper's orders and signals from their episodes' (kind, content, valid_at)."""
    orders, signals = [], []
    for kind, text, at in rows:
        content = json.loads(text)
        if kind == "order":
            lines = tuple(OrderLine(ln["product_id"], ln["quantity"], ln.get("price")) for ln in content["lines"])
            orders.append(OrderRecord(content["order_id"], user_id, at, lines, content.get("total")))
        else:
            signals.append(
                SignalRecord(
                    content["event_id"], user_id, content["product_id"], content["event_type"], content["weight"], at
                )
            )
    return orders, signals
