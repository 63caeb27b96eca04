"""The shopper's moment, and what sells more in it: the context engine. Pure: no I/O.

A `Moment` is the shopper's local time (weekday, part of the day and its meal, season) and, when the
client sends it, the weather. The daily job `context_patterns` counts order lines by category in each
moment's slots and turns the counts into lifts: how much more a category is bought in that slot than
usual, for the whole store and for each shopper, smoothed towards 1 where there are few lines. Search
and recommendations add a bounded share of the log-lift of a result's category to its score and say
why ("Popular on Saturday mornings", "You often buy this in the evening").
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from functools import cached_property

from shared.domain.events import Weather, WeatherCondition
from shared.domain.nextbasket import ndcg_at_k
from shared.domain.ranking import Ranked
from shared.domain.rules import ContextRules

WEEKDAYS = ("Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday")  # 0 = Sunday


@dataclass(frozen=True)
class Daypart:
    name: str
    first_hour: int  # local hour it starts at
    meal: str
    plural: str  # "Popular on Saturday <plural>"
    phrase: str  # "You often buy this <phrase>"


DAYPARTS = (  # by first hour; the night runs past midnight to the morning
    Daypart("morning", 5, "breakfast", "mornings", "in the morning"),
    Daypart("midday", 11, "lunch", "lunchtimes", "at lunchtime"),
    Daypart("afternoon", 15, "snack", "afternoons", "in the afternoon"),
    Daypart("evening", 17, "dinner", "evenings", "in the evening"),
    Daypart("night", 21, "snack", "nights", "at night"),
)
SEASONS = ("winter", "winter", "spring", "spring", "spring", "summer", "summer", "summer", "autumn", "autumn",
           "autumn", "winter")  # by month, northern hemisphere  # fmt: skip
WEATHER_PHRASE = {
    "clear": "on sunny days",
    "clouds": "on cloudy days",
    "rain": "when it rains",
    "snow": "when it snows",
    "storm": "in stormy weather",
    "fog": "on foggy days",
    "wind": "on windy days",
}
STORE_PRIOR_LINES = 100.0  # smoothing: a slot's category share is pulled to the usual share by this many lines
SHOPPER_PRIOR_LINES = 20.0
MIN_LOG_LIFT = 0.05  # lifts closer to 1 than this are not published
STORE_TOP = 8_000  # the store's strongest lifts kept: its one document stays well under Firestore's 1 MiB
SHOPPER_TOP = 24  # a shopper's strongest lifts kept: their document stays small, the job's rows bounded


@dataclass(frozen=True)
class Moment:
    """When (and in what weather) the shopper shops, in their local time."""

    weekday: int  # 0 = Sunday
    hour: int
    month: int | None = None  # None: unknown (the season is not used)
    weather: str | None = None

    @classmethod
    def at(cls, local: datetime, weather: Weather | WeatherCondition | None = None) -> Moment:
        condition = weather.condition if isinstance(weather, Weather) else weather
        return cls((local.isoweekday() % 7), local.hour, local.month, condition)

    @property
    def daypart(self) -> Daypart:
        return next((p for p in reversed(DAYPARTS) if self.hour >= p.first_hour), DAYPARTS[-1])

    @property
    def season(self) -> str | None:
        return SEASONS[self.month - 1] if self.month else None

    def store_slots(self) -> list[str]:
        """The store-wide slots this moment falls in: weekday and part of day, season, weather."""
        slots = [f"when:{self.weekday}:{self.daypart.name}"]
        if self.season:
            slots.append(f"season:{self.season}")
        if self.weather:
            slots.append(f"weather:{self.weather}")
        return slots

    def shopper_slots(self) -> list[str]:
        """A shopper's own slots: fewer and wider, as one shopper has few orders."""
        return [f"part:{self.daypart.name}", f"weekday:{self.weekday}"]

    def described(self) -> dict[str, str | None]:
        part = self.daypart
        weekday = WEEKDAYS[self.weekday].lower()
        season, weather = self.season, self.weather
        return {"weekday": weekday, "daypart": part.name, "meal": part.meal, "season": season, "weather": weather}


def reason(slot: str) -> str:
    """The readable reason for a slot's lift: "Popular on Saturday mornings", "You often buy this in the evening"."""
    kind, _, rest = slot.partition(":")
    if kind == "when":
        weekday, _, part = rest.partition(":")
        return f"Popular on {WEEKDAYS[int(weekday)]} {_part(part).plural}"
    if kind == "season":
        return f"Popular in {rest}"
    if kind == "weather":
        return f"Popular {WEATHER_PHRASE.get(rest, 'in this weather')}"
    if kind == "part":
        return f"You often buy this {_part(rest).phrase}"
    if kind == "weekday":
        return f"You often buy this on {WEEKDAYS[int(rest)]}s"
    raise ValueError(f"not a slot of a moment: {slot!r}")  # only a Moment's own slots are looked up


def _part(name: str) -> Daypart:
    return next(p for p in DAYPARTS if p.name == name)


# --- learning ------------------------------------------------------------------------------------------------


@dataclass
class SlotCounts:
    """Order lines by category, overall and in each slot."""

    in_slot: Counter[tuple[str, str]] = field(default_factory=Counter)  # (slot, category) -> lines
    slot_lines: Counter[str] = field(default_factory=Counter)
    category_lines: Counter[str] = field(default_factory=Counter)
    lines: int = 0

    def add(self, category: str, slots: Iterable[str], n: int = 1) -> None:
        self.category_lines[category] += n
        self.lines += n
        for slot in slots:
            self.in_slot[(slot, category)] += n
            self.slot_lines[slot] += n

    def lifts(self, prior_lines: float, top: int | None = None) -> list[tuple[str, str, float]]:
        """(slot, category, lift), strongest first: the category's share of the slot's lines over its
        usual share, with `prior_lines` of the usual share mixed into the slot's (so little evidence
        stays near 1); only lifts at least MIN_LOG_LIFT away from 1 (in log), the `top` strongest."""
        out = []
        for (slot, category), n in self.in_slot.items():
            usual = self.category_lines[category] / self.lines
            lift = (n + prior_lines * usual) / (self.slot_lines[slot] + prior_lines) / usual
            if abs(math.log(lift)) >= MIN_LOG_LIFT:
                out.append((slot, category, round(lift, 3)))
        out.sort(key=lambda entry: (-abs(math.log(entry[2])), entry[0], entry[1]))
        return out[:top]


class ContextCounter:
    """Counts order lines for the store and each shopper; a shopper's lifts can be taken (and their
    counts dropped) once all their lines are in, so a job holds one chunk of shoppers at a time."""

    def __init__(self) -> None:
        self.store = SlotCounts()
        self.shoppers: dict[str, SlotCounts] = {}

    def add(self, user: str, category: str, moment: Moment, lines: int = 1) -> None:
        category = category.lower()
        self.store.add(category, moment.store_slots(), lines)
        self.shoppers.setdefault(user, SlotCounts()).add(category, moment.shopper_slots(), lines)

    def add_order(self, user: str, order: PastOrder) -> None:
        """Every line of one of the shopper's orders, in its moment."""
        for _, category in order.lines:
            self.add(user, category, order.moment)

    def take_shoppers(self) -> dict[str, list[tuple[str, str, float]]]:
        """shopper -> their lifts, for the shoppers counted since the last take."""
        taken, self.shoppers = self.shoppers, {}
        return {user: counts.lifts(SHOPPER_PRIOR_LINES, SHOPPER_TOP) for user, counts in taken.items()}

    def store_lifts(self) -> list[tuple[str, str, float]]:
        return self.store.lifts(STORE_PRIOR_LINES, STORE_TOP)


def lifts_document(lifts: Iterable[tuple[str, str, float]]) -> list[dict[str, str | float]]:
    """Lifts as the features snapshot keeps them (a list of maps: Firestore holds no nested lists)."""
    return [{"slot": slot, "category": category, "lift": lift} for slot, category, lift in lifts]


def lifts_of(document: Iterable[Mapping[str, object]]) -> dict[str, dict[str, float]]:
    """slot -> category -> lift, from the snapshot's list."""
    return nested((str(e["slot"]), str(e["category"]), float(e["lift"])) for e in document)  # type: ignore[arg-type]


# --- tuning ------------------------------------------------------------------------------------------------

WEIGHTS = (0.0, 0.02, 0.05, 0.1, 0.2, 0.4)  # the weights tried, smallest first (a tie keeps the smaller)
MIN_GAIN = 0.001  # NDCG@10 a weight must gain over no context to be chosen


@dataclass(frozen=True)
class PastOrder:
    moment: Moment
    lines: tuple[tuple[str, str], ...]  # (product id, category)


def tuned_weight(histories: Mapping[str, Sequence[PastOrder]], store: Lifts, cap: float) -> tuple[float, dict]:
    """(the weight of the context lift, the NDCG@10 of every weight tried): the weight among WEIGHTS
    that best ranks each shopper's last order among the products they bought before it, scored as
    the rules ranking counts history (log(1 + times bought)) plus the weight x the category's
    log-lift in that order's moment, with the shopper's lifts from the orders before it. No context
    (0) unless a weight gains MIN_GAIN: the lift is published only where the store's data shows it helps."""
    gains = dict.fromkeys(WEIGHTS, 0.0)
    asked = 0
    for history in histories.values():
        if len(history) < 2:
            continue
        *before, last = history
        counts = SlotCounts()
        bought: Counter[str] = Counter()
        category: dict[str, str] = {}
        for order in before:
            for product, cat in order.lines:
                counts.add(cat.lower(), order.moment.shopper_slots())
                bought[product] += 1
                category[product] = cat
        wanted = {product for product, _ in last.lines}
        if not wanted & set(bought):
            continue
        context = ContextLift(last.moment, store, nested(counts.lifts(SHOPPER_PRIOR_LINES)))
        lifts = {product: max(-cap, min(cap, context.of(cat)[0])) for product, cat in category.items()}
        asked += 1
        for weight in WEIGHTS:
            ranked = [p for _, p in sorted((-(math.log1p(n) + weight * lifts[p]), p) for p, n in bought.items())]
            gains[weight] += ndcg_at_k(ranked, wanted, 10)
    scores = {weight: round(total / max(asked, 1), 4) for weight, total in gains.items()}
    best = max(WEIGHTS, key=lambda w: (scores[w], -w))
    chosen = best if scores[best] >= scores[0.0] + MIN_GAIN else 0.0
    return chosen, {"ndcg@10": scores, "shoppers": asked}


def nested(lifts: Iterable[tuple[str, str, float]]) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    for slot, category, lift in lifts:
        out.setdefault(slot, {})[category] = lift
    return out


# --- applying ------------------------------------------------------------------------------------------------

Lifts = Mapping[str, Mapping[str, float]]  # slot -> category -> lift


@dataclass(frozen=True)
class ContextLift:
    """What sells more in this moment: the store's lifts and the shopper's own, for its slots."""

    moment: Moment
    store: Lifts
    shopper: Lifts
    weight: float = 0.0  # score per unit of log-lift: the job's tuned weight, or the store's override

    def of(self, category: str) -> tuple[float, str | None]:
        """(the category's log-lifts summed over this moment's slots, the reason of its strongest
        positive one, or None)."""
        total, best, why = 0.0, 0.0, None
        category = category.lower()
        for slot, lifts in self._slot_lifts:
            lift = lifts.get(category)
            if lift:
                log_lift = math.log(lift)
                total += log_lift
                if log_lift > best:
                    best, why = log_lift, reason(slot)
        return total, why

    @cached_property
    def _slot_lifts(self) -> list[tuple[str, Mapping[str, float]]]:
        """(slot, its lifts by category) of this moment's slots that have lifts: once per answer, not per result."""
        slots = [(slot, self.store.get(slot)) for slot in self.moment.store_slots()]
        slots += [(slot, self.shopper.get(slot)) for slot in self.moment.shopper_slots()]
        return [(slot, lifts) for slot, lifts in slots if lifts]


def lift_context(
    ranked: Sequence[Ranked], context: ContextLift, rules: ContextRules, min_relevance: float
) -> tuple[list[Ranked], dict[str, str]]:
    """Add the context's weight x the category's log-lift in this moment (bounded by +-`rules.cap`) to
    the score of the good matches (at least `min_relevance` of the best, as the re-ranking) and
    re-sort, ties in order; with why (product id -> reason) for the good matches whose lift is at
    least `rules.reason_lift`, true of them even where the weight is 0 and nothing moves."""
    if not ranked or not (context.store or context.shopper):
        return list(ranked), {}
    weight, cap = context.weight, rules.cap
    floor = min_relevance * max(item.relevance for item in ranked)
    threshold = math.log(rules.reason_lift)
    out, reasons = [], {}
    for item in ranked:
        if item.relevance < floor:
            out.append(item)
            continue
        log_lift, why = context.of(item.product.category)
        boost = weight * max(-cap, min(cap, log_lift))
        out.append(replace(item, score=item.score + boost) if boost else item)
        if why is not None and log_lift >= threshold:
            reasons[item.product.id] = why
    return (sorted(out, key=lambda item: -item.score) if weight > 0 else out), reasons
