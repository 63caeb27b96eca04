"""Merchandising rules: what a store's merchandisers decide on top of the ranking (pins, boosts and
buries, hidden products, promoted slots, per-surface personalization strength), validated at load.

Semantics, applied to an answer's compiled results after personalization:
- a rule's `query` matches a search query when both are equal after case folding and collapsing
  whitespace (exact match, no stemming or partial match); no `query` matches every query;
- `hide` removes the product (it wins over every other rule);
- `boost` / `bury` add / subtract `amount` (0..1] times the answer's best |score| to the score of
  each result whose facet matches (product id exactly; brand, category, attribute case-insensitively),
  then the results are re-sorted by the adjusted score (ties keep their order);
- `pin` and `promote` put a product at a 0-based `position` (as `rank`), taking it from the results
  or, when absent, from the catalog; pins are placed before promotions, each in rule order; the first
  rule to claim a product wins, a later rule whose position is taken gets the next free one, and a
  position past the end goes last.
Each result a rule moved says which (`rule`), and pins and promotions add a badge ("Pinned", or the
promotion's label "Promoted"/"Sponsored"); a promoted result has `promoted: true`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from shared.domain.rules import Facet

Surface = Literal["search", "rank", "recommendations"]
PIN_BADGE = "Pinned"
NOT_MATCHED = -1  # the base_rank of a product a rule brought in: it was not among the matches


class MerchandisingError(ValueError):
    """Rules refused; `fields` are (dotted path, message) pairs, with the line in a file."""

    def __init__(self, message: str, fields: list[tuple[str, str]]) -> None:
        super().__init__(message)
        self.fields = fields


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


Id = Annotated[str, Field(pattern=r"^[A-Za-z0-9_.:@-]{1,128}$")]
Query = Annotated[str, Field(min_length=1, max_length=200)]
Position = Annotated[int, Field(ge=0, le=999)]


class _Rule(_Strict):
    id: Id
    query: Query | None = None  # None: every query

    def matches(self, query: str) -> bool:
        return self.query is None or normalize(self.query) == normalize(query)


class Pin(_Rule):
    kind: Literal["pin"]
    query: Query  # a pin is for a query
    product_id: Id
    position: Position


class Promote(_Rule):
    kind: Literal["promote"]
    product_id: Id
    position: Position
    label: Literal["Promoted", "Sponsored"] = "Promoted"


class Hide(_Rule):
    kind: Literal["hide"]
    product_id: Id


class Boost(_Rule):
    kind: Literal["boost", "bury"]
    facet: Facet
    value: Annotated[str, Field(min_length=1, max_length=200)]
    amount: float = Field(gt=0, le=1)  # times the answer's best |score|

    def applies_to(self, result: Mapping[str, Any]) -> bool:
        if self.facet == "product":
            return result["product_id"] == self.value
        wanted = self.value.casefold()
        if self.facet == "attribute":
            return any(str(a).casefold() == wanted for a in result["attributes"])
        return str(result[self.facet] or "").casefold() == wanted

    @property
    def delta(self) -> float:
        return self.amount if self.kind == "boost" else -self.amount


Rule = Annotated[Pin | Promote | Hide | Boost, Field(discriminator="kind")]
KINDS = ("pin", "promote", "hide", "boost", "bury")


class MerchandisingRules(_Strict):
    """A store's whole set of rules (the file, or what the admin API replaces)."""

    version: Literal[1] = 1
    # Multiplies the personalization strength on a surface: 0 is plain order, 1 (default) unchanged.
    strength: dict[Surface, Annotated[float, Field(ge=0, le=1)]] = {}
    rules: tuple[Rule, ...] = Field(default=(), max_length=1000)

    @model_validator(mode="after")
    def _unique_ids(self) -> MerchandisingRules:
        seen: set[str] = set()
        for rule in self.rules:
            if rule.id in seen:
                raise ValueError(f"rule id {rule.id!r} is used twice")
            seen.add(rule.id)
        return self

    def strength_for(self, surface: Surface) -> float:
        return self.strength.get(surface, 1.0)

    def without(self, rule_id: str) -> MerchandisingRules:
        """These rules but the one with `rule_id`; KeyError when there is none."""
        kept = tuple(r for r in self.rules if r.id != rule_id)
        if len(kept) == len(self.rules):
            raise KeyError(rule_id)
        return self.model_copy(update={"rules": kept})


def normalize(query: str) -> str:
    """How queries compare: case-folded, whitespace collapsed."""
    return " ".join(query.casefold().split())


def parse_merchandising(
    data: object, source: str = "merchandising rules", node: yaml.Node | None = None
) -> MerchandisingRules:
    """Validate parsed YAML/JSON into MerchandisingRules, or raise MerchandisingError naming each
    field as a dotted path (`rules.2.position`), with its line when the YAML `node` is given."""
    try:
        return MerchandisingRules.model_validate(data)
    except ValidationError as exc:
        fields = []
        for err in exc.errors(include_url=False):
            path = _path(err["loc"])
            line = _line(node, path) if node is not None else None
            fields.append((".".join(map(str, path)) or "<root>", err["msg"] + (f" (line {line})" if line else "")))
        problems = "; ".join(f"{field}: {message}" for field, message in fields)
        raise MerchandisingError(f"invalid {source}: {problems}", fields) from None


def load_merchandising(path: str | Path) -> MerchandisingRules:
    """Read and validate a merchandising rules YAML file; errors name the key and its line."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except OSError as exc:
        raise MerchandisingError(f"cannot read merchandising rules file {path}: {exc.strerror}", []) from None
    except yaml.YAMLError as exc:
        raise MerchandisingError(f"merchandising rules file {path} is not valid YAML: {exc}", []) from None
    data = {} if data is None else data  # an empty file: no rules
    return parse_merchandising(data, f"merchandising rules file {path}", node)


def _path(loc: tuple) -> list:
    """The error's location without pydantic's union tag (`rules.2.pin.position` -> `rules.2.position`)
    or its mark of a bad mapping key (`strength.checkout.[key]` -> `strength.checkout`)."""
    out: list = []
    for part in loc:
        if part == "[key]":
            continue
        if out and isinstance(out[-1], int) and len(out) == 2 and out[0] == "rules" and part in KINDS:
            continue
        out.append(part)
    return out


def _line(node: yaml.Node | None, path: list) -> int | None:
    """The 1-based line of the deepest node of `path` the file has (a missing key: its mapping's)."""
    found = node
    for part in path:
        child = None
        if isinstance(found, yaml.MappingNode):
            child = next((v for k, v in found.value if getattr(k, "value", None) == str(part)), None)
        elif isinstance(found, yaml.SequenceNode) and isinstance(part, int) and part < len(found.value):
            child = found.value[part]
        if child is None:
            break
        found = child
    return found.start_mark.line + 1 if found is not None else None


def apply(
    rules: MerchandisingRules,
    query: str,
    results: list[dict],
    limit: int,
    bring: Callable[[str], dict | None],
) -> list[dict]:
    """The results with the rules that match `query` applied (see the module docstring), at most
    `limit`; `bring(product_id)` compiles a result for a pinned or promoted product not among them
    (None when the catalog has no such product). Every result gets `rule` and `promoted`."""
    matching = [r for r in rules.rules if r.matches(query)]
    hidden = {r.product_id for r in matching if isinstance(r, Hide)}
    out = [r | {"rule": None, "promoted": False} for r in results if r["product_id"] not in hidden]
    boosts = [r for r in matching if isinstance(r, Boost)]
    if boosts and out:
        best = max(abs(r["score"]) for r in out) or 1.0
        for result in out:
            for boost in boosts:
                if boost.applies_to(result):
                    result["score"] = round(result["score"] + boost.delta * best, 4)
                    result["rule"] = result["rule"] or boost.id
        out.sort(key=lambda r: -r["score"])  # stable: ties keep the ranking's order
    fixed: dict[int, dict] = {}
    claimed: set[str] = set()
    slots = [r for r in matching if isinstance(r, Pin)] + [r for r in matching if isinstance(r, Promote)]
    for slot in slots:
        if slot.product_id in claimed or slot.product_id in hidden:
            continue
        item = next((r for r in out if r["product_id"] == slot.product_id), None)
        if item is None:
            brought = bring(slot.product_id)
            if brought is None:
                continue
            item = brought | {"base_rank": NOT_MATCHED, "promoted": False}
        promoted = isinstance(slot, Promote)
        badge = slot.label if isinstance(slot, Promote) else PIN_BADGE
        position = slot.position
        while position in fixed:  # taken by an earlier rule: the next free one
            position += 1
        fixed[position] = item | {
            "rule": slot.id,
            "promoted": promoted,
            "badges": [badge, *(b for b in item["badges"] if b != badge)],
        }
        claimed.add(slot.product_id)
    rest = iter(r for r in out if r["product_id"] not in claimed)
    placed: list[dict] = []
    for position in range(len(out) + len(fixed)):
        item = fixed.pop(position, None) or next(rest, None)
        if item is not None:
            placed.append(item)
    placed += [fixed[p] for p in sorted(fixed)]  # positions past the end
    placed = placed[:limit]
    for rank, item in enumerate(placed):
        moved = 0 if item["base_rank"] == NOT_MATCHED else item["base_rank"] - rank
        item.update(rank=rank, position=rank, moved=moved)
    return placed
