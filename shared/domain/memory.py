"""Graph memory's facts, derived deterministically from the order history (no LLM).

Graphiti's bi-temporal model: a fact is true in the world from `valid_at` until `invalid_at`
(valid time) and was believed by the system from `created_at` until `expired_at` (transaction
time). Facts are recomputed from the stored history, so delivering orders twice, late or out of
order converges to the same graph; a fact that a late order proves was never true is retracted
(its validity collapses to nothing and it expires), never silently rewritten.
"""

from __future__ import annotations

import itertools
import statistics
import uuid
from collections import defaultdict
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

NAMESPACE = uuid.UUID("5b6f2d0e-5e43-4c58-9d0b-8f0c3c6f1a11")
STORE_GROUP = "leafloaf"  # catalog entities and product-to-product facts, shared by all shoppers

FREQUENTLY_BUYS = "frequently_buys"
REORDER_CYCLE = "reorder_cycle"
BOUGHT_WITH = "bought_with"
PREFERS = "prefers"
AVOIDS = "avoids"
USER_FACTS = (FREQUENTLY_BUYS, REORDER_CYCLE, PREFERS, AVOIDS)
MIN_ORDERS_FOR_FREQUENT = 2
STRONG_SIGNAL = 0.5  # |rules weight| from which a non-purchase signal states a preference (cart adds, returns)


def stable_id(*parts: object) -> str:
    """uuid5 of the parts: writing the same thing twice is an upsert of the same row."""
    return str(uuid.uuid5(NAMESPACE, "|".join(str(p) for p in parts)))


def user_group(user_id: str) -> str:
    """The shopper's partition of the graph; graphiti allows letters, digits, '-' and '_' in group ids,
    so other characters are escaped as _xx (hex): distinct users never share a group."""
    escaped = "".join(c if c.isascii() and (c.isalnum() or c == "-") else f"_{ord(c):02x}" for c in user_id)
    return f"user_{escaped}"


def user_node(user_id: str) -> str:
    return stable_id("user", user_id)


def product_node(product_id: str) -> str:
    return stable_id("product", product_id)


@dataclass(frozen=True)
class OrderLine:
    product_id: str
    quantity: int = 1
    price: float | None = None


@dataclass(frozen=True)
class OrderRecord:
    order_id: str
    user_id: str
    placed_at: datetime
    lines: tuple[OrderLine, ...]
    total: float | None = None

    @property
    def episode_id(self) -> str:
        return stable_id("order", self.user_id, self.order_id)


@dataclass(frozen=True)
class SignalRecord:
    """A strong non-purchase signal kept as an episode (provenance of prefers / avoids)."""

    event_id: str
    user_id: str
    product_id: str
    event_type: str
    weight: float
    at: datetime

    @property
    def episode_id(self) -> str:
        return stable_id("signal", self.user_id, self.event_id)


@dataclass(frozen=True)
class Fact:
    """One relationship edge: `source` and `target` are entity node ids."""

    uuid: str
    name: str
    group_id: str
    source: str
    target: str
    attributes: dict[str, Any]
    valid_at: datetime
    invalid_at: datetime | None = None
    created_at: datetime | None = None
    expired_at: datetime | None = None
    episodes: tuple[str, ...] = field(default=())

    def holds_at(self, at: datetime) -> bool:
        """True in the world at `at` (and not retracted)."""
        return self.valid_at <= at and (self.invalid_at is None or at < self.invalid_at)

    @property
    def retracted(self) -> bool:
        return self.invalid_at is not None and self.invalid_at <= self.valid_at

    def describe(self) -> str:
        """The fact as a sentence; the same for every version of one uuid (only what the id fixes)."""
        product = self.attributes.get("product_id", self.target)
        if self.name == REORDER_CYCLE:
            return f"rebuys {product} every {self.attributes['cycle_days']} days"
        if self.name == FREQUENTLY_BUYS:
            return f"buys {product} regularly"
        return f"{self.name} {product} after {self.attributes.get('signal', 'a signal')}"


# -- recording -------------------------------------------------------------------------------------


def pair(a: str, b: str) -> tuple[str, str]:
    """A product pair in a fixed order: bought_with is undirected."""
    return (a, b) if a < b else (b, a)


def basket_pairs(products: Iterable[str], weight: int = 1) -> dict[tuple[str, str], int]:
    ordered = sorted(set(products))
    return {(a, b): weight for i, a in enumerate(ordered) for b in ordered[i + 1 :]}


def new_lines(
    orders: Iterable[OrderRecord], recorded: dict[str, set[str]]
) -> tuple[dict[str, list[OrderLine]], dict[tuple[str, str], int]]:
    """Lines not recorded yet, per order episode, and how many baskets each product pair gains.

    `recorded` holds the products already stored per order episode. An order delivered again adds
    nothing; one delivered in parts counts each pair once, when its second product arrives.
    """
    added: dict[str, list[OrderLine]] = defaultdict(list)
    pairs: dict[tuple[str, str], int] = defaultdict(int)
    known = {episode: set(products) for episode, products in recorded.items()}
    for order in orders:
        basket = known.setdefault(order.episode_id, set())
        for line in order.lines:
            if line.product_id in basket:
                continue
            for other in basket:
                pairs[pair(line.product_id, other)] += 1
            basket.add(line.product_id)
            added[order.episode_id].append(line)
    return dict(added), dict(pairs)


# -- derivation ----------------------------------------------------------------------------------


def purchases_by_product(history: Iterable[OrderRecord]) -> dict[str, list[tuple[datetime, int, str]]]:
    """product -> [(placed_at, quantity, episode id)] in time order."""
    bought: dict[str, list[tuple[datetime, int, str]]] = defaultdict(list)
    for order in sorted(history, key=lambda o: (o.placed_at, o.order_id)):
        for line in order.lines:
            bought[line.product_id].append((order.placed_at, line.quantity, order.episode_id))
    return bought


def cycle_of(days: list[datetime]) -> tuple[float, float] | None:
    """(cycle_days, confidence) from distinct purchase days (calendar days apart); None below two days.

    cycle = median gap; confidence = regularity x support, where regularity = 1 - mean absolute
    deviation / median (floored at 0) and support = gaps / (gaps + 2): two regular gaps give 0.5.
    """
    if len(days) < 2:
        return None
    gaps = [float((b.date() - a.date()).days) for a, b in itertools.pairwise(days)]  # calendar days
    median = statistics.median(gaps)
    if median <= 0:
        return None
    regularity = max(0.0, 1.0 - statistics.fmean(abs(g - median) for g in gaps) / median)
    support = len(gaps) / (len(gaps) + 2)
    return round(median, 2), round(regularity * support, 3)


def distinct_days(purchases: list[tuple[datetime, int, str]]) -> list[datetime]:
    """The first purchase of each calendar day (several orders a day are one shopping trip)."""
    days: dict[object, datetime] = {}
    for at, _, _ in purchases:
        days.setdefault(at.date(), at)
    return sorted(days.values())


def cycle_timeline(user_id: str, product_id: str, purchases: list[tuple[datetime, int, str]]) -> list[Fact]:
    """One reorder_cycle fact per purchase day from the second on, each valid until the next."""
    days = distinct_days(purchases)
    episodes = {at: ep for at, _, ep in purchases}
    facts: list[Fact] = []
    for k in range(2, len(days) + 1):
        cycle = cycle_of(days[:k])
        if cycle is None:
            continue
        cycle_days, confidence = cycle
        valid_at = days[k - 1]
        attributes = {
            "product_id": product_id,
            "cycle_days": cycle_days,
            "confidence": confidence,
            "next_expected": (valid_at + timedelta(days=cycle_days)).isoformat(),
        }
        if facts:
            facts[-1] = replace(facts[-1], invalid_at=valid_at)
        facts.append(
            Fact(
                uuid=stable_id(REORDER_CYCLE, user_id, product_id, valid_at.isoformat(), cycle_days, confidence),
                name=REORDER_CYCLE,
                group_id=user_group(user_id),
                source=user_node(user_id),
                target=product_node(product_id),
                attributes=attributes,
                valid_at=valid_at,
                episodes=(episodes.get(valid_at, ""),),
            )
        )
    return facts


def preference_timeline(user_id: str, product_id: str, signals: list[SignalRecord]) -> list[Fact]:
    """prefers / avoids from strong signals: each change of polarity starts a fact and ends the last."""
    facts: list[Fact] = []
    for signal in sorted(signals, key=lambda s: (s.at, s.event_id)):
        name = PREFERS if signal.weight > 0 else AVOIDS
        if facts and facts[-1].name == name:
            continue  # the same stance again: the fact stands
        if facts:
            facts[-1] = replace(facts[-1], invalid_at=signal.at)
        facts.append(
            Fact(
                uuid=stable_id(name, user_id, product_id, signal.at.isoformat()),
                name=name,
                group_id=user_group(user_id),
                source=user_node(user_id),
                target=product_node(product_id),
                attributes={"product_id": product_id, "signal": signal.event_type, "weight": signal.weight},
                valid_at=signal.at,
                episodes=(signal.episode_id,),
            )
        )
    return facts


def user_facts(
    user_id: str,
    history: Iterable[OrderRecord],
    signals: Iterable[SignalRecord] = (),
    products: Collection[str] | None = None,
) -> list[Fact]:
    """Every fact derived about the user: frequently_buys, reorder_cycle and prefers/avoids timelines.

    A product's facts depend only on that product's purchases and signals, so with `products`
    only those products' facts are derived (what a batch touched), from the same history.
    """
    facts: list[Fact] = []
    by_product: dict[str, list[SignalRecord]] = defaultdict(list)
    for signal in signals:
        if products is None or signal.product_id in products:
            by_product[signal.product_id].append(signal)
    for product_id, product_signals in sorted(by_product.items()):
        facts += preference_timeline(user_id, product_id, product_signals)
    if products is not None:
        history = (replace(o, lines=tuple(ln for ln in o.lines if ln.product_id in products)) for o in history)
    for product_id, purchases in sorted(purchases_by_product(history).items()):
        orders = {ep for _, _, ep in purchases}
        if len(orders) >= MIN_ORDERS_FOR_FREQUENT:
            order_times = sorted({ep: at for at, _, ep in reversed(purchases)}.values())
            became_frequent, last = order_times[MIN_ORDERS_FOR_FREQUENT - 1], purchases[-1][0]
            quantities = [q for _, q, _ in purchases]
            facts.append(
                Fact(
                    uuid=stable_id(FREQUENTLY_BUYS, user_id, product_id),
                    name=FREQUENTLY_BUYS,
                    group_id=user_group(user_id),
                    source=user_node(user_id),
                    target=product_node(product_id),
                    attributes={
                        "product_id": product_id,
                        "frequency": len(orders),
                        "quantity": int(statistics.median_low(quantities)),
                        "last_quantity": quantities[-1],
                        "last_purchase": last.isoformat(),
                    },
                    valid_at=became_frequent,
                    episodes=tuple(sorted(orders)),
                )
            )
        facts += cycle_timeline(user_id, product_id, purchases)
    return facts


def about(facts: Iterable[Fact], products: Collection[str]) -> list[Fact]:
    """The derived kinds of fact (not free-text ones) about these products."""
    return [f for f in facts if f.name in USER_FACTS and f.attributes.get("product_id") in products]


@dataclass(frozen=True)
class FactChanges:
    """What to write so the stored facts of a kind match the derived ones."""

    insert: list[Fact]
    update: list[Fact]  # same uuid, new attributes / invalid_at / expired_at


def reconcile(stored: Iterable[Fact], derived: Iterable[Fact], now: datetime) -> FactChanges:
    """Diff stored facts against freshly derived ones (same names, same user).

    New facts are inserted (created now). A stored fact whose validity ended is invalidated and
    expires now, as Graphiti does; one the history no longer supports is retracted (its validity
    collapses to its start); current counters (frequently_buys) are updated in place.
    """
    stored_by_id = {f.uuid: f for f in stored}
    derived_by_id = {f.uuid: f for f in derived}
    insert, update = [], []
    for uid, fact in derived_by_id.items():
        old = stored_by_id.get(uid)
        if old is None:
            insert.append(replace(fact, created_at=now, expired_at=now if fact.invalid_at else None))
        elif old.retracted or old.invalid_at != fact.invalid_at or old.attributes != fact.attributes:
            expired = old.expired_at or now if fact.invalid_at is not None else None
            update.append(replace(fact, created_at=old.created_at, expired_at=expired))
    for uid, old in stored_by_id.items():
        if uid not in derived_by_id and not old.retracted:
            update.append(replace(old, invalid_at=old.valid_at, expired_at=now))
    return FactChanges(insert, update)


# -- answers ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class UsualItem:
    product_id: str
    frequency: int
    quantity: int
    last_purchase: str
    cycle_days: float | None
    confidence: float | None
    next_expected: str | None


def usual_items(facts: Iterable[Fact], at: datetime, limit: int = 20) -> list[UsualItem]:
    """'My usual': products bought in at least two orders and not avoided now, with quantity and
    current cycle, most frequent first."""
    current = [f for f in facts if f.holds_at(at)]
    cycles = {f.attributes["product_id"]: f.attributes for f in current if f.name == REORDER_CYCLE}
    avoided = {f.attributes["product_id"] for f in current if f.name == AVOIDS}
    items = []
    for fact in current:
        if fact.name != FREQUENTLY_BUYS or fact.attributes["product_id"] in avoided:
            continue
        a = fact.attributes
        cycle = cycles.get(a["product_id"], {})
        items.append(
            UsualItem(
                a["product_id"],
                int(a["frequency"]),
                int(a["quantity"]),
                str(a["last_purchase"]),
                cycle.get("cycle_days"),
                cycle.get("confidence"),
                cycle.get("next_expected"),
            )
        )
    items.sort(key=lambda i: (-i.frequency, -(i.confidence or 0), i.product_id))
    return items[:limit]


def due_items(facts: Iterable[Fact], at: datetime, min_confidence: float = 0.0) -> list[UsualItem]:
    """Products whose current cycle expects a purchase on or before `at`."""
    items = [
        i
        for i in usual_items(facts, at, limit=10_000)
        if i.next_expected is not None
        and datetime.fromisoformat(i.next_expected) <= at
        and (i.confidence or 0) >= min_confidence
    ]
    return sorted(items, key=lambda i: (str(i.next_expected), i.product_id))
