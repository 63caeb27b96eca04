"""One ranker: features per (shopper, candidate), the rules score, and a learnt correction on top.

The rules score is served when no model is published: normalised relevance, the design's live lift
(strength * tanh of the weighted facet affinities), the long-horizon purchase count and the store's
popularity. A learnt model (LightGBM LambdaRank, trained on replays with the rules score as its
starting point) adds its own score to it, so a model only ever corrects the rules. Reasons come from
the per-feature contributions of both parts: every reason shown moved the product.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from shared.domain.catalog import Catalog, Product, facet_keys
from shared.domain.profile import Affinities
from shared.domain.rules import RankingRules
from shared.pacing import paced, paced_steps

FEATURES = (
    "relevance",  # base relevance / the best candidate's
    "personal",  # the design's personal score: weighted live facet affinities plus the price term
    "product",  # live affinities (short horizon), per facet
    "brand",
    "category",
    "attribute",
    "price_fit",
    "own_count",  # long horizon: decayed purchase count of the product
    "own_days",  # days since the product's latest purchase (NEVER when none is remembered)
    "own_brand_count",
    "own_category_count",
    "own_category_days",
    "due",  # days since the latest purchase / the product's reorder cycle (the jobs'; 0 when none)
    "cycle_confidence",  # that cycle's confidence (0 when none)
    "popularity",  # log(1 + orders with the product) / log(1 + the most ordered product's orders)
    "category_share",  # the product's share of its category's orders
    "viewed_now",  # this session: viewed or clicked in the request's recent views
    "in_cart",
)
COLUMN = {name: i for i, name in enumerate(FEATURES)}
NEVER = 9_999.0  # "days since" for what was never bought: far beyond any memory
MAX_DUE = 10.0  # ten cycles overdue is as overdue as it gets
# Each feature's value when nothing is known (no affinity, never bought, no session signal).
ABSENT = np.array([NEVER if name in ("own_days", "own_category_days") else 0.0 for name in FEATURES])


class ModelArtifactError(ValueError):
    """A ranking model artifact that cannot be loaded; the message says why."""


@dataclass(frozen=True)
class StoreStats:
    """What the store's orders say about products: orders holding each one."""

    popularity: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Session:
    """What the request says about the shopper beyond the profile: this session's views and cart, and
    the reorder cycles the jobs learnt (product id -> (cycle days, confidence))."""

    viewed: frozenset[str] = frozenset()
    cart: frozenset[str] = frozenset()
    cycles: Mapping[str, tuple[float, float]] = field(default_factory=dict)


ROWS_PER_STEP = 10_000  # rows of the attribute columns carried over per step of a new version's table


class FeatureTable:
    """The catalog's facet columns, bound once per catalog and stats, so features for hundreds of
    candidates are a few array lookups and one sparse product."""

    def __init__(
        self,
        catalog: Catalog,
        rules: RankingRules,
        stats: StoreStats | None = None,
        previous: FeatureTable | None = None,
    ) -> None:
        """`previous`, the table of an earlier catalog version, lends the columns of every product
        object both versions hold (a new version is mostly the same products)."""
        self.catalog = catalog
        self.rules = rules
        self.stats = stats or StoreStats()
        self.columns: dict[str, int] = dict(previous.columns) if previous is not None else {}
        lent = catalog.rows_in(previous.catalog) if previous is not None else np.full(len(catalog), -1)
        single: dict[str, list[int]] = {"product": [], "brand": [], "category": []}
        attributes: list[list[int]] = []
        own = lent < 0
        new_rows: list[int] = np.flatnonzero(own).tolist()  # products no earlier table holds
        for row in paced(new_rows):
            product = catalog.products[row]
            found: dict[str, int] = {}
            mine: list[int] = []
            for facet, key in catalog.keys(product.id):
                column = self.columns.setdefault(key, len(self.columns))
                if facet == "attribute":
                    mine.append(column)
                else:
                    found[facet] = column
            for name, columns in single.items():
                columns.append(found.get(name, -1))
            attributes.append(sorted(mine))  # summed in column order, as a sparse product would
        self.missing = len(self.columns)  # the slot of a facet a product lacks (always 0 / NEVER)
        self.single: dict[str, np.ndarray] = {}
        for name, given in single.items():
            lane = np.full(len(lent), self.missing, dtype=np.int64)
            lane[own] = np.where(np.array(given, dtype=np.int64) < 0, self.missing, given)
            if previous is not None:
                lane[~own] = _moved(previous.single[name][lent[~own]], previous.missing, self.missing)
            self.single[name] = lane
        # Each product's attribute columns, padded with the missing slot to the widest product's
        # count: a candidate's attribute affinity is a few gathers and adds, no sparse indexing.
        kept_rows = np.flatnonzero(~own) if previous is not None else np.zeros(0, dtype=np.int64)
        borrowed_width = previous.attribute_columns.shape[1] if previous is not None and len(kept_rows) else 0
        width = max(max((len(a) for a in attributes), default=0), borrowed_width)
        self.attribute_columns: np.ndarray = np.full((len(lent), width), self.missing, dtype=np.int64)
        for row, mine in zip(new_rows, attributes, strict=True):
            self.attribute_columns[row, : len(mine)] = mine
        if previous is not None:  # in blocks: the whole table at once held the interpreter for ms
            for step in paced_steps(len(kept_rows), ROWS_PER_STEP):
                rows = kept_rows[step]
                borrowed = previous.attribute_columns[lent[rows]]
                self.attribute_columns[rows, :borrowed_width] = _moved(borrowed, previous.missing, self.missing)
        self.price_tanh = np.tanh(np.nan_to_num(catalog.price_ratios, nan=0.0))
        self.orders = np.empty(len(catalog), dtype=np.float64)
        fresh: Sequence[int] = new_rows
        if previous is not None and previous.stats is self.stats:  # the same stats: each held row's count
            self.orders[~own] = previous.orders[lent[~own]]
        else:
            fresh = range(len(catalog))
        popularity, products = self.stats.popularity, catalog.products
        for row in paced(fresh):
            self.orders[row] = popularity.get(products[row].id, 0.0)
        orders = self.orders
        self.top_orders = math.log1p(orders.max()) if len(orders) and orders.max() > 0 else 1.0
        codes = catalog.category_codes
        by_category = np.bincount(codes, weights=orders, minlength=len(catalog.category_names))
        self.category_orders = {
            name: total for name, total in zip(catalog.category_names, by_category.tolist(), strict=True) if total
        }  # fmt: skip
        totals = by_category[codes]
        self.popularity = np.log1p(orders) / self.top_orders
        self.category_share = np.divide(orders, totals, out=np.zeros_like(orders), where=totals > 0)

    def for_catalog(self, catalog: Catalog) -> FeatureTable:
        """The same stats on another catalog version, reusing this table's work."""
        return FeatureTable(catalog, self.rules, self.stats, previous=self)

    def _values(self, values: Mapping[str, float], columns: Mapping[str, int]) -> Callable[..., np.ndarray]:
        """A lookup of `values` (by facet key) at facet columns."""
        return _lookup([(columns[key], value) for key, value in values.items() if key in columns])

    def features(
        self,
        rows: np.ndarray,
        relevance: np.ndarray,
        affinities: Affinities | None,
        session: Session = Session(),
    ) -> np.ndarray:
        """The (candidates x FEATURES) matrix of catalog rows; `relevance` is normalised by the caller."""
        single = {facet: columns[rows] for facet, columns in self.single.items()}
        facts = _Facts(self.columns, single, self.attribute_columns[rows], self.price_tanh[rows])
        return self._features(facts, self.popularity[rows], self.category_share[rows], relevance, affinities, session)

    def features_of(
        self,
        products: Sequence[Product],
        relevance: np.ndarray,
        affinities: Affinities | None,
        session: Session = Session(),
    ) -> np.ndarray:
        """The same matrix for products the catalog may not hold, from their own facts (brand,
        category, attributes, price): a facet key the catalog has shares its column, so the
        shopper's affinity for a brand counts for a product of that brand the catalog lacks."""
        # Only these products' keys: the profile is looked up in a map of a few dozen keys, not the catalog's.
        columns: dict[str, int] = {}
        keys = [facet_keys(p.id, p.brand, p.category, p.attributes) for p in products]
        for key in (k for product in keys for _, k in product):
            if key not in columns:
                known = self.columns.get(key)
                columns[key] = known if known is not None else self.missing + 1 + len(columns)
        single = {
            facet: np.array([next((columns[k] for f, k in mine if f == facet), self.missing) for mine in keys])
            for facet in self.single
        }
        attributes = [[columns[k] for f, k in mine if f == "attribute"] for mine in keys]
        width = max((len(a) for a in attributes), default=0)
        attribute_columns = np.full((len(products), width), self.missing, dtype=np.int64)
        for row, mine in enumerate(attributes):
            attribute_columns[row, : len(mine)] = mine
        ratios = [self.catalog.price_ratio_of(p, p.price) for p in products]
        price_tanh = np.tanh(np.array([0.0 if r is None else r for r in ratios]))
        orders = np.array([float(self.stats.popularity.get(p.id, 0.0)) for p in products])
        totals = np.array([self.category_orders.get(p.category.lower(), 0.0) for p in products])
        share = np.divide(orders, totals, out=np.zeros_like(orders), where=totals > 0)
        facts = _Facts(columns, single, attribute_columns, price_tanh)
        return self._features(facts, np.log1p(orders) / self.top_orders, share, relevance, affinities, session)

    def _features(
        self,
        facts: _Facts,
        popularity: np.ndarray,
        category_share: np.ndarray,
        relevance: np.ndarray,
        affinities: Affinities | None,
        session: Session,
    ) -> np.ndarray:
        x = np.zeros((len(relevance), len(FEATURES)))
        x[:, COLUMN["relevance"]] = relevance
        x[:, COLUMN["own_days"]] = NEVER
        x[:, COLUMN["own_category_days"]] = NEVER
        x[:, COLUMN["popularity"]] = popularity
        x[:, COLUMN["category_share"]] = category_share
        if affinities is not None:
            live = self._values(affinities.scores, facts.columns)
            weights = self.rules.facet_weights
            personal = np.zeros(len(x))
            for facet in ("product", "brand", "category"):
                values = live(facts.single[facet])
                x[:, COLUMN[facet]] = values
                personal += weights[facet] * values
            attribute = np.zeros(len(x))
            for slot in live(facts.attributes).T:  # one attribute slot of every candidate at a time
                attribute += slot
            x[:, COLUMN["attribute"]] = attribute
            personal += weights["attribute"] * attribute
            if affinities.price_preference is not None:
                fit = math.tanh(affinities.price_preference) * facts.price_tanh
                x[:, COLUMN["price_fit"]] = fit
                personal += self.rules.price_weight * fit
            x[:, COLUMN["personal"]] = personal
            if affinities.history:
                counts = self._values({k: c for k, (c, _) in affinities.history.items()}, facts.columns)
                days = self._values({k: d for k, (_, d) in affinities.history.items()}, facts.columns)
                products, brands, categories = (facts.single[f] for f in ("product", "brand", "category"))
                x[:, COLUMN["own_count"]] = counts(products)
                x[:, COLUMN["own_days"]] = days(products, NEVER)
                x[:, COLUMN["own_brand_count"]] = counts(brands)
                x[:, COLUMN["own_category_count"]] = counts(categories)
                x[:, COLUMN["own_category_days"]] = days(categories, NEVER)
        # Product ids are unique: a candidate is a product when its product column is.
        if session.cycles:
            self._due(x, facts, session.cycles)
        if session.viewed:
            x[:, COLUMN["viewed_now"]] = np.isin(facts.single["product"], facts.products_of(session.viewed))
        if session.cart:
            x[:, COLUMN["in_cart"]] = np.isin(facts.single["product"], facts.products_of(session.cart))
        return x

    def _due(self, x: np.ndarray, facts: _Facts, cycles: Mapping[str, tuple[float, float]]) -> None:
        """Fill due-ness and cycle confidence for the candidates with a reorder cycle."""
        column = facts.columns
        known = [(column[f"product:{p}"], cycle) for p, cycle in cycles.items() if f"product:{p}" in column]
        known = [(c, cycle) for c, cycle in known if cycle[0] > 0]
        products = facts.single["product"]
        days = _lookup([(c, days) for c, (days, _) in known])(products)
        # A cycle without a remembered purchase (memory ended) counts as long overdue, capped.
        overdue = np.minimum(x[:, COLUMN["own_days"]] / np.where(days > 0, days, 1.0), MAX_DUE)
        x[:, COLUMN["due"]] = np.where(days > 0, overdue, 0.0)
        x[:, COLUMN["cycle_confidence"]] = _lookup([(c, confidence) for c, (_, confidence) in known])(products)


@dataclass(frozen=True)
class _Facts:
    """Candidates' facet columns and price level: gathered from the table, or built for ad-hoc products."""

    columns: Mapping[str, int]  # facet key -> column
    single: Mapping[str, np.ndarray]  # product, brand, category: each candidate's column
    attributes: np.ndarray  # candidates x widest: attribute columns, padded with the missing slot
    price_tanh: np.ndarray

    def products_of(self, product_ids: Iterable[str]) -> list[int]:
        return [self.columns[key] for key in (f"product:{p}" for p in product_ids) if key in self.columns]


def _moved(columns: np.ndarray, old_missing: int, new_missing: int) -> np.ndarray:
    """Columns of an earlier table, their missing slot moved to this table's (past its new columns)."""
    return np.where(columns == old_missing, new_missing, columns)


def _lookup(pairs: list[tuple[int, float]]) -> Callable[..., np.ndarray]:
    """values by int key, looked up for an array of keys (`default` where absent): a profile or a
    shopper's cycles hold a few hundred keys, so sorting them and searching beats filling a vector as
    wide as the catalog."""
    keys = np.array([k for k, _ in pairs], dtype=np.int64)
    order = np.argsort(keys)
    keys, values = keys[order], np.array([v for _, v in pairs], dtype=np.float64)[order]

    def at(wanted: np.ndarray, default: float = 0.0) -> np.ndarray:
        if not len(keys):
            return np.full(wanted.shape, default)
        place = np.minimum(np.searchsorted(keys, wanted), len(keys) - 1)
        return np.where(keys[place] == wanted, values[place], default)

    return at


def rules_parts(x: np.ndarray, rules: RankingRules) -> np.ndarray:
    """The rules score split by feature (candidates x FEATURES); its row sums are the rules score."""
    parts = np.zeros_like(x)
    parts[:, COLUMN["relevance"]] = x[:, COLUMN["relevance"]]
    parts[:, COLUMN["personal"]] = rules.strength * np.tanh(x[:, COLUMN["personal"]])
    parts[:, COLUMN["own_count"]] = rules.history_weight * np.log1p(np.maximum(x[:, COLUMN["own_count"]], 0.0))
    parts[:, COLUMN["popularity"]] = rules.popularity_weight * x[:, COLUMN["popularity"]]
    return parts


class LearntModel:
    """A LightGBM ranking model's raw scores and per-feature contributions."""

    def __init__(self, text: str) -> None:
        import lightgbm  # imported when a model is loaded: the rules ranking needs no LightGBM

        try:
            self.booster = lightgbm.Booster(model_str=text)
        except Exception as exc:  # LightGBM raises its own error type on any malformed model text
            raise ModelArtifactError(f"the model does not load: {exc}") from None
        names = tuple(self.booster.feature_name())
        if names != FEATURES:
            raise ModelArtifactError(f"the model's features {names} are not this ranker's {FEATURES}")
        self.text = text

    def scores(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(self.booster.predict(x, raw_score=True, num_threads=1), dtype=np.float64)

    def contributions(self, x: np.ndarray) -> np.ndarray:
        """(candidates x FEATURES) contributions (LightGBM's SHAP values; the bias column dropped)."""
        out = np.asarray(self.booster.predict(x, pred_contrib=True, num_threads=1), dtype=np.float64)
        return out[:, : len(FEATURES)]


@dataclass(frozen=True)
class RankerArtifact:
    """What the daily job publishes: the store's stats and, when one beat the serving ranking on a
    held-out replay, a learnt model."""

    version: str
    stats: StoreStats
    model: str | None = None  # LightGBM model text
    metrics: Mapping[str, Any] = field(default_factory=dict)

    def to_bytes(self) -> bytes:
        document = {
            "format": 1,
            "version": self.version,
            "features": list(FEATURES),
            "popularity": dict(self.stats.popularity),
            "model": self.model,
            "metrics": dict(self.metrics),
        }
        return json.dumps(document, separators=(",", ":")).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> RankerArtifact:
        """Parse an artifact, or raise ModelArtifactError saying what is wrong with it."""
        try:
            document = json.loads(data)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ModelArtifactError(f"not a ranking artifact (not JSON: {exc})") from None
        if not isinstance(document, dict) or document.get("format") != 1:
            raise ModelArtifactError("not a ranking artifact of format 1")
        if document.get("features") != list(FEATURES):
            raise ModelArtifactError("the artifact's features are not this ranker's (made by another version)")
        popularity = document.get("popularity")
        if not isinstance(popularity, dict) or not all(
            isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) and v >= 0
            for v in popularity.values()
        ):
            raise ModelArtifactError("the artifact's popularity is not a map of finite counts")
        model = document.get("model")
        if model is not None and not isinstance(model, str):
            raise ModelArtifactError("the artifact's model is not LightGBM model text")
        return cls(str(document.get("version")), StoreStats(popularity), model, document.get("metrics") or {})


@dataclass
class Ranking:
    """Candidates in served order with their scores and each one's contributions by feature."""

    order: np.ndarray  # indices into the candidates, best first
    score: np.ndarray  # per candidate
    learnt: bool  # a model's correction is part of the score
    scored: np.ndarray  # per candidate: the model re-scored it


class Ranker:
    """Scores candidates with the rules and, when loaded, the learnt model."""

    def __init__(self, table: FeatureTable, model: LearntModel | None = None, version: str | None = None) -> None:
        self.table = table
        self.model = model
        self.version = version

    def rank(self, x: np.ndarray, use_model: bool = True, strength: float = 1.0) -> Ranking:
        """Order the candidates: by the rules score, then the model's correction re-orders the
        rules' best `model_depth` (they stay above the rest, so a model reorders good answers).
        `strength` (0..1, the store's per surface) scales everything but relevance."""
        rules = self.table.rules
        score = _scaled(rules_parts(x, rules), strength).sum(axis=1)
        # Weak matches (below min_relevance of the best) stay below the good ones, in base order.
        eligible = x[:, COLUMN["relevance"]] >= rules.min_relevance
        base = np.arange(len(x))
        order = np.lexsort((base, np.where(eligible, -score, 0.0), ~eligible))
        learnt = use_model and self.model is not None and len(x) > 0
        scored = np.zeros(len(x), dtype=bool)
        if learnt:
            assert self.model is not None
            depth = min(rules.model_depth, int(eligible.sum()))
            top = order[:depth]
            score = score.copy()
            score[top] += strength * self.model.scores(x[top])
            scored[top] = True
            order = np.concatenate([top[np.lexsort((top, -score[top]))], order[depth:]])
        return Ranking(order, score, learnt, scored)

    def contributions(self, x: np.ndarray, scored: np.ndarray | None = None, strength: float = 1.0) -> np.ndarray:
        """Per-feature contributions of the candidates in `x` (relevance included): the rules' parts,
        plus the model's for the candidates it `scored`, on the features the shopper has a value for.
        A model's contributions are measured against its training average, so a feature at its
        "nothing known" value (never bought, no affinity) would read as a reason that is not true."""
        parts = rules_parts(x, self.table.rules)
        if self.model is not None and scored is not None and scored.any():
            model = self.model.contributions(x[scored]) * (x[scored] != ABSENT)
            parts[scored] += model
        return _scaled(parts, strength)


def _scaled(parts: np.ndarray, strength: float) -> np.ndarray:
    """The parts with every feature's but relevance's times `strength` (1: unchanged)."""
    if strength == 1.0:
        return parts
    scaled = parts * strength
    scaled[:, COLUMN["relevance"]] = parts[:, COLUMN["relevance"]]
    return scaled


def ranker_of(artifact: RankerArtifact | None, catalog: Catalog, rules: RankingRules) -> Ranker:
    """The ranker an artifact makes for a catalog: its stats, and its model when it has one."""
    if artifact is None:
        return Ranker(FeatureTable(catalog, rules))
    model = LearntModel(artifact.model) if artifact.model is not None else None
    return Ranker(FeatureTable(catalog, rules, artifact.stats), model, artifact.version)
