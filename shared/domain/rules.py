"""Personalization rules: signal weights, decay classes and ranking knobs, validated at load."""

from __future__ import annotations

from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

Facet = Literal["product", "brand", "category", "attribute"]
ALL_FACETS: tuple[Facet, ...] = ("product", "brand", "category", "attribute")
PURCHASE_KINDS = ("first_time", "repeat", "bulk_purchase", "subscription")
# The ranking's long-horizon purchase memory: a decay class of its own, outside the live affinities.
HISTORY = "history"


class RulesError(ValueError):
    """The rules file is missing or invalid; the message names the offending key."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DecayClass(_Strict):
    factor: float = Field(gt=0, le=1)
    memory_days: float = Field(gt=0)


class DwellBucket(_Strict):
    min_seconds: float = Field(ge=0)
    weight: float


class Signal(_Strict):
    decay: str
    weight: float | None = None
    dwell_buckets: tuple[DwellBucket, ...] = ()
    facets: tuple[Facet, ...] = ALL_FACETS

    @model_validator(mode="after")
    def _one_weight_source(self) -> Signal:
        if (self.weight is None) == (not self.dwell_buckets):
            raise ValueError("give either 'weight' or 'dwell_buckets'")
        seconds = [b.min_seconds for b in self.dwell_buckets]
        if seconds != sorted(seconds):
            raise ValueError("dwell_buckets must be sorted by min_seconds")
        return self

    def weight_for(self, dwell_seconds: float | None) -> float:
        """The signal's weight; for dwell signals, the highest bucket the dwell time reaches."""
        if self.weight is not None:
            return self.weight
        reached = [b.weight for b in self.dwell_buckets if (dwell_seconds or 0.0) >= b.min_seconds]
        return reached[-1] if reached else 0.0


class PurchaseRules(_Strict):
    bulk_min_quantity: int = Field(ge=2)


class RankingRules(_Strict):
    facet_weights: dict[Facet, float]
    strength: float = Field(ge=0, le=1)
    min_relevance: float = Field(ge=0, le=1)
    candidate_pool: int = Field(ge=1, le=1000)
    price_weight: float = Field(ge=0)
    min_reason: float = Field(ge=0)
    confidence_scale: float = Field(gt=0)
    budget_ms: float = Field(gt=0)
    # What the scheduled jobs learnt: the lift of a usual or due product, and the reorder confidence
    # from which "time to reorder" is shown.
    learned_boost: float = Field(default=0.1, ge=0, le=1)
    reorder_min_confidence: float = Field(default=0.3, ge=0, le=1)
    # Long-horizon purchase memory for ranking only (the live affinities keep the design's formula):
    # each purchase counts 1 for its product, brand and category, decaying by `factor` per day.
    history: DecayClass = DecayClass(factor=0.99, memory_days=365)
    # The rules ranking (served when no learnt model is): weights of the long-horizon purchase
    # count and of the store's popularity, next to relevance and the live lift.
    history_weight: float = Field(default=1.0, ge=0)
    popularity_weight: float = Field(default=0.6, ge=0)
    # How many of the rules' best candidates a learnt model re-scores (its cost grows with them).
    model_depth: int = Field(default=200, ge=1, le=1000)


class ContextRules(_Strict):
    """The context engine (shared.domain.context): the store's time zone (the moment of a request that
    gives no local time, and the local time of the orders the job learns from), and how much a
    category's log-lift in the shopper's moment adds to a result's score."""

    timezone: str = "UTC"
    # Score per unit of log-lift. None: the weight the context_patterns job tuned on the store's own
    # orders (0 where context did not help them); a number overrides it (0: context off).
    weight: float | None = Field(default=None, ge=0, le=1)
    cap: float = Field(default=1.0, gt=0)  # the log-lift counted at most, either way
    reason_lift: float = Field(default=1.25, ge=1)  # the lift from which the reason is shown

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r} (an IANA name, e.g. Europe/Paris)") from None
        return value


class Rules(_Strict):
    """The whole rules file. Decay classes are indexed in file order (see `decay_index`)."""

    version: Literal[1]
    score_cap: float = Field(gt=0)
    price_prior_weight: float = Field(ge=0)
    decay: dict[str, DecayClass]
    signals: dict[str, Signal]
    purchase: PurchaseRules
    ranking: RankingRules
    context: ContextRules = ContextRules()

    @model_validator(mode="after")
    def _consistent(self) -> Rules:
        unknown = sorted({s.decay for s in self.signals.values()} - set(self.decay))
        if unknown:
            raise ValueError(f"signals use undefined decay classes: {unknown}")
        if HISTORY in self.decay:
            raise ValueError(f"decay class name {HISTORY!r} is reserved for ranking.history")
        missing = sorted(set(PURCHASE_KINDS) - set(self.signals))
        if missing:
            raise ValueError(f"signals must define every purchase kind, missing: {missing}")
        return self

    @property
    def decay_index(self) -> dict[str, int]:
        return {name: i for i, name in enumerate(self.decay)}


def parse_rules(data: object, source: str = "rules") -> Rules:
    """Validate already-parsed YAML/JSON data into Rules, or raise RulesError naming the key."""
    try:
        return Rules.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '<root>'}: {err['msg']}" for err in exc.errors()
        )
        raise RulesError(f"invalid {source}: {problems}") from None


def load_rules(path: str | Path) -> Rules:
    """Read and validate a rules YAML file."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise RulesError(f"cannot read rules file {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise RulesError(f"rules file {path} is not valid YAML: {exc}") from None
    return parse_rules(data, source=f"rules file {path}")
