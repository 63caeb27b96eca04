"""The real-time engine: applies events to profiles and reads them back, plus the batch reference."""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from shared.domain.catalog import Catalog, FacetKeys, Product, facet_keys
from shared.domain.events import EventType, Interaction, PurchaseKind
from shared.domain.profile import (
    Affinities,
    FacetIndex,
    Profile,
    clip,
    decayed,
    event_hash,
)
from shared.domain.rules import HISTORY, PURCHASE_KINDS, Facet, Rules
from shared.pacing import paced

PRICE_NUM, PRICE_DEN = "price:num", "price:den"
HISTORY_FACETS = frozenset(("product", "brand", "category"))  # what the long-horizon purchase memory counts
HISTORY_COUNT = {EventType.PURCHASE: 1.0, EventType.RETURNED: -1.0}
ProductPlan = tuple[tuple[tuple[str, int], ...], float | None]
FORGOTTEN = 1e-6  # an expired accumulator smaller than this is dropped: reinforced again, it would add less
Term = int | str  # in a read: an instance facet id, or the key of a profile's own facet (summed by key)


@dataclass(frozen=True, slots=True)
class ProductFacts:
    """What an event says about its product: from the catalog, else from the event itself."""

    product_id: str
    keys: FacetKeys
    price_ratio: float | None  # log(unit price / category median), None when unknown

    def keys_for(self, facets: tuple[Facet, ...]) -> list[str]:
        return [key for facet, key in self.keys if facet in facets]


class Applied(NamedTuple):  # a tuple: cheaper to build than a frozen dataclass on the hot path
    """The outcome of one event: whether it changed the profile, and as which signal."""

    applied: bool
    signal: str | None = None
    weight: float = 0.0


def facts_for(event: Interaction, catalog: Catalog) -> ProductFacts:
    pid = event.product_id or ""
    product: Product | None = catalog.get(pid)
    if product is not None:
        ratio = catalog.price_ratio(pid) if event.price is None else catalog.price_ratio_of(product, event.price)
        return ProductFacts(pid, catalog.keys(pid), ratio)
    # Unknown to the catalog: trust the event's facts; without a size its price level is unknown.
    keys = facet_keys(pid, event.product_brand, event.product_category, event.product_attributes or ())
    return ProductFacts(pid, keys, None)


def signal_name(event: Interaction, rules: Rules, bought_before: bool) -> str | None:
    """The rules signal an event counts as; None for events without a profile signal (search)."""
    if event.event_type is EventType.SEARCH:
        return None
    if event.event_type is not EventType.PURCHASE:
        return event.event_type.value
    return purchase_kind(event, rules, bought_before)


def purchase_kind(event: Interaction, rules: Rules, bought_before: bool) -> str:
    """first_time, repeat, bulk_purchase or subscription: as given, else inferred."""
    if event.purchase_kind is not None:
        return event.purchase_kind.value
    if event.quantity >= rules.purchase.bulk_min_quantity:
        return PurchaseKind.BULK_PURCHASE.value
    return PurchaseKind.REPEAT.value if bought_before else PurchaseKind.FIRST_TIME.value


class ProfileEngine:
    """Pure domain logic over profiles; one instance per function instance (holds the facet index).

    The facet index holds the catalog's keys only, so it is bounded by the catalog; keys the
    catalog does not know (unknown products, their brands, categories and attributes) live in the
    profile that uses them, bounded with it by `compact`.
    """

    def __init__(self, rules: Rules, catalog: Catalog, dedup_window: int = 32) -> None:
        self.rules = rules
        self.dedup_window = dedup_window
        self.facets = FacetIndex()
        self._price_ids = (self.facets.add(PRICE_NUM), self.facets.add(PRICE_DEN))
        # The live decay classes, then the ranking's long-horizon purchase memory (left out of affinities).
        self._classes = [*rules.decay.items(), (HISTORY, rules.ranking.history)]
        self._n = len(self._classes)
        self._history = self._n - 1
        self._class_of = rules.decay_index | {HISTORY: self._history}
        self._purchase_classes = {self._class_of[rules.signals[kind].decay] for kind in PURCHASE_KINDS}
        self._memory_s = [decay.memory_days * 86_400.0 for _, decay in self._classes]
        # Per signal: the rules entry, its decay class index and factor, the facets it speaks about.
        self._plans = {
            name: (signal, self._class_of[signal.decay], rules.decay[signal.decay].factor, frozenset(signal.facets))
            for name, signal in rules.signals.items()
        }
        self._view: tuple[Catalog, dict[str, ProductPlan]] = (Catalog([]), {})
        self.adopt(catalog)

    @property
    def catalog(self) -> Catalog:
        return self._view[0]

    def adopt(self, catalog: Catalog) -> None:
        """Serve `catalog` from now on (a new version): its keys join the facet index, which only
        grows, so profiles built on an older version keep their meaning, and the product plans
        start afresh (a product's facts may have changed). The catalog and its plans are swapped
        as one, so an event applied meanwhile caches no plan of the old catalog in the new one."""
        fresh = np.flatnonzero(catalog.rows_in(self._view[0]) < 0)  # the same product object: keys are in
        for row in paced(fresh.tolist()):
            for _, key in catalog.keys(catalog.products[row].id):
                self.facets.add(key)
        self._view = (catalog, {})

    def _product_plan(self, event: Interaction, profile: Profile) -> ProductPlan:
        """(facet, facet id) pairs of the event's product (the product first) and its price level."""
        pid = event.product_id or ""
        catalog, plans = self._view
        plan = plans.get(pid) if event.price is None else None
        if plan is None:
            facts = facts_for(event, catalog)
            plan = (tuple((facet, self._fid(profile, key)) for facet, key in facts.keys), facts.price_ratio)
            if event.price is None and catalog.get(pid) is not None:  # catalog keys: instance ids only
                plans[pid] = plan
        return plan

    def _fid(self, profile: Profile, key: str) -> int:
        """The instance's id of a catalog key, else the profile's own id for it."""
        fid = self.facets.get(key)
        return profile.local_id(key) if fid is None else fid

    def _key(self, profile: Profile, fid: int) -> str:
        return self.facets.key_of(fid) if fid >= 0 else profile.local_key(fid)

    def _term(self, key: str) -> Term:
        fid = self.facets.get(key)
        return key if fid is None else fid

    def _name(self, term: Term) -> str:
        return term if isinstance(term, str) else self.facets.key_of(term)

    # -- writing ---------------------------------------------------------------------------
    def apply(self, profile: Profile, event: Interaction) -> Applied:
        """Apply one event in O(1) (in the number of facets it touches). Duplicates are no-ops."""
        digest = event_hash(event.event_id)
        if profile.seen(digest):
            return Applied(False)
        profile.remember(digest, self.dedup_window)
        if event.event_type is EventType.SEARCH:  # kept for the pipeline, no profile signal
            return Applied(True)
        fids, price_ratio = self._product_plan(event, profile)
        product_fid = fids[0][1]
        t = event.epoch_seconds
        n = self._n
        counted = HISTORY_COUNT.get(event.event_type)
        if counted:  # a purchase counts one in the long-horizon memory, a return takes it back
            history = [fid * n + self._history for facet, fid in fids if facet in HISTORY_FACETS]
            profile.add(history, counted, t, self.rules.ranking.history.factor)
        if event.event_type is EventType.PURCHASE:
            name = purchase_kind(event, self.rules, profile.quantity(product_fid) is not None)
            profile.set_quantity(product_fid, event.quantity)
        else:
            name = event.event_type.value
        signal, cls, factor, facets = self._plans[name]
        weight = signal.weight if signal.weight is not None else signal.weight_for(event.context.time_on_page)
        if weight == 0.0:
            return Applied(True, name, weight)
        profile.add([fid * n + cls for facet, fid in fids if facet in facets], weight, t, factor)
        if weight > 0 and price_ratio is not None:
            num, den = self._price_ids
            profile.add((num * n + cls,), weight * price_ratio, t, factor)
            profile.add((den * n + cls,), weight, t, factor)
        return Applied(True, name, weight)

    def compact(self, profile: Profile, now: float, max_bytes: int | None = None) -> None:
        """Forget what has expired, then shed the weakest facets until `encode` fits in `max_bytes`.

        First every accumulator whose memory has ended and whose decayed value is below FORGOTTEN
        goes: reads at `now` are unchanged, and so are later ones to within FORGOTTEN per accumulator
        (an expired accumulator counts again, decayed, if its facet and class are reinforced).
        Preferred quantities stay, and with them whether a product was bought before. Then, only if
        the encoded profile is larger than `max_bytes` (None: no bound), whole facets (a key with all
        its decay classes and, for a product, its preferred quantity) go, weakest first, until the
        rest fits: a facet's strength is its largest |decayed value| at `now` over the classes it is
        still remembered in, the purchase memory's counts included (expired ones and a quantity
        alone count 0). The price accumulators always stay. The profile's own keys that nothing
        uses any more are forgotten.
        """
        n, memory, classes = self._n, self._memory_s, self._classes
        live = [
            (a, v, r)
            for a, v, r in profile.accumulators()
            if now - r <= memory[a % n] or abs(decayed(v, r, now, classes[a % n][1].factor)) >= FORGOTTEN
        ]
        self._keep(profile, live, list(profile.quantities()))
        if max_bytes is not None and len(self.encode(profile)) > max_bytes:
            kept = self._strongest(profile, now, max_bytes)
            self._keep(
                profile,
                [acc for acc in profile.accumulators() if acc[0] // n in kept],
                [(fid, q) for fid, q in profile.quantities() if fid in kept],
            )

    def _keep(
        self, profile: Profile, accumulators: list[tuple[int, float, int]], quantities: list[tuple[int, int]]
    ) -> None:
        """Keep only these accumulators and quantities, and the profile's own keys they use."""
        n = self._n
        own = profile.local_keys()
        facets = {a // n for a, _, _ in accumulators} | {fid for fid, _ in quantities}
        used = sorted((fid for fid in facets if fid < 0), reverse=True)  # -1, -2, ...: their old order
        if len(used) < len(own):  # renumber the local ids still used to -1, -2, ...
            renumber = {old: -i - 1 for i, old in enumerate(used)}
            accumulators = [(renumber.get(a // n, a // n) * n + a % n, v, r) for a, v, r in accumulators]
            quantities = [(renumber.get(fid, fid), q) for fid, q in quantities]
        profile.load(accumulators, profile.recent(), quantities, [own[-fid - 1] for fid in used])

    def _strongest(self, profile: Profile, now: float, max_bytes: int) -> set[int]:
        """The facets to keep so the encoded profile fits in max_bytes: the strongest first."""
        n, price = self._n, self._price_ids
        names = [len(name) for name, _ in self._classes]
        key_bytes: dict[int, int] = {}
        strength: dict[int, float] = {}
        cost: dict[int, int] = defaultdict(int)  # each facet's exact bytes in `encode`, its commas included
        for acc_id, value, ref in profile.accumulators():
            fid, cls = divmod(acc_id, n)
            if fid not in price:
                if fid not in key_bytes:
                    key_bytes[fid] = _json_len(self._key(profile, fid))
                remembered = now - ref <= self._memory_s[cls]
                part = decayed(value, ref, now, self._classes[cls][1].factor) if remembered else 0.0
                strength[fid] = max(strength.get(fid, 0.0), abs(part))
                # [key,"class",value,ref], as json.dumps writes it (floats by repr), and a comma
                cost[fid] += key_bytes[fid] + names[cls] + len(repr(value)) + len(str(ref)) + 8
        for fid, q in profile.quantities():
            strength.setdefault(fid, 0.0)
            cost[fid] += _json_len(self._key(profile, fid)) + len(str(q)) + 4  # [key,q],
        budget = max_bytes - (len(self.encode(profile)) - sum(cost.values())) - 2  # less the rest, two commas
        kept = set(price)
        for fid in sorted(strength, key=strength.__getitem__, reverse=True):
            budget -= cost[fid]
            if budget < 0:
                break
            kept.add(fid)
        return kept

    # -- reading ---------------------------------------------------------------------------
    def read(
        self, profile: Profile, now: float, session: Iterable[Interaction] = (), ignore: Iterable[str] = ()
    ) -> Affinities:
        """The profile's affinities at `now`: the reference formula, evaluated incrementally.

        `session` events (sent along with a request) count as if applied, unless the profile has
        already applied them (same event id); the profile itself is not changed. Signals of the
        decay classes in `ignore` (e.g. "purchase", when the shopper turned purchase history off)
        are left out.
        """
        sums: dict[Term, float] = defaultdict(float)
        best: dict[Term, tuple[float, int]] = {}
        history: dict[Term, tuple[float, float]] = {}
        ignored = {self._class_of[name] for name in ignore}
        if ignored & self._purchase_classes:
            ignored.add(self._history)  # the long horizon is what purchases taught too
        self._sum(profile, now, sums, best, history, frozenset(ignored))
        unseen = [e for e in session if not profile.seen(event_hash(e.event_id))]
        if unseen:
            scratch = Profile(profile.user_id)
            for event in unseen:
                self.apply(scratch, event)
            self._sum(scratch, now, sums, best, {})
        return self._affinities(sums, best, history)

    def _sum(
        self,
        profile: Profile,
        now: float,
        sums: dict[Term, float],
        best: dict[Term, tuple[float, int]],
        history: dict[Term, tuple[float, float]],
        ignored: frozenset[int] = frozenset(),
    ) -> None:
        """Add the profile's decayed accumulators at `now` into `sums` (uncapped) and `best`, and
        its long-horizon purchase memory into `history` (count, days since the latest purchase).
        The profile's own facets are summed by key (two profiles' local ids do not agree), or with
        the instance's id of that key once a newer catalog holds it."""
        for acc_id, value, ref in profile.accumulators():
            fid: Term
            fid, cls = divmod(acc_id, self._n)
            if cls in ignored:
                continue
            if now - ref > self._memory_s[cls]:
                continue
            part = decayed(value, ref, now, self._classes[cls][1].factor)
            if fid < 0:  # a key the catalog did not hold then; a newer version may hold it now
                key = profile.local_key(fid)
                known = self.facets.get(key)
                fid = key if known is None else known
            if cls == self._history:
                history[fid] = (part, max(0.0, now - ref) / 86_400.0)
                continue
            sums[fid] += part
            if abs(part) > best.get(fid, (0.0, 0))[0]:
                best[fid] = (abs(part), cls)

    def _affinities(
        self, sums: dict[Term, float], best: dict[Term, tuple[float, int]], history: dict[Term, tuple[float, float]]
    ) -> Affinities:
        num, den = self._price_ids
        den_sum = sums.pop(den, 0.0)
        num_sum = sums.pop(num, 0.0)
        cap = self.rules.score_cap
        scores = {self._name(f): clip(s, cap) for f, s in sums.items()}
        dominant = {self._name(f): self._classes[c][0] for f, (_, c) in best.items() if f in sums}
        # The prior pulls the preference toward neutral until there is enough evidence.
        price = num_sum / (den_sum + self.rules.price_prior_weight) if den_sum > 1e-9 else None
        return Affinities(scores, dominant, price, {self._name(f): h for f, h in history.items()})

    # -- persistence -------------------------------------------------------------------------
    def encode(self, profile: Profile) -> bytes:
        """A portable document: facet keys and class names, not this instance's or profile's ids."""
        names = [name for name, _ in self._classes]
        n = self._n
        doc = {
            "v": 1,
            "acc": [[self._key(profile, a // n), names[a % n], v, r] for a, v, r in profile.accumulators()],
            "recent": profile.recent(),
            "qty": [[self._key(profile, fid), q] for fid, q in profile.quantities()],
        }
        return _compact_json(doc).encode()

    def decode(self, user_id: str, data: bytes) -> Profile:
        """The inverse of `encode`; accumulators of decay classes the rules no longer have are dropped."""
        doc = json.loads(data)
        profile = Profile(user_id)
        accumulators = [
            (self._fid(profile, key) * self._n + self._class_of[name], float(value), int(ref))
            for key, name, value, ref in doc["acc"]
            if name in self._class_of
        ]
        quantities = [(self._fid(profile, key), int(q)) for key, q in doc["qty"]]
        profile.load(accumulators, doc["recent"], quantities, profile.local_keys())
        return profile

    def preferred_quantities(self, profile: Profile) -> dict[str, int]:
        return {self._key(profile, fid).split(":", 1)[1]: q for fid, q in profile.quantities()}

    # -- the batch reference (tests and benchmarks) -----------------------------------------
    def reference(self, events: Iterable[Interaction], now: float) -> Affinities:
        """Recompute affinities from the full history: sum(weight * factor ** age_days), capped.

        Events are taken in arrival order (it decides first_time vs repeat); duplicate ids count once.
        """
        interactions: dict[tuple[Term, int], list[tuple[float, float]]] = defaultdict(list)
        seen: set[str] = set()
        bought: set[str] = set()
        for event in events:
            if event.event_id in seen or event.event_type is EventType.SEARCH:
                seen.add(event.event_id)
                continue
            seen.add(event.event_id)
            facts = facts_for(event, self.catalog)
            name = signal_name(event, self.rules, facts.product_id in bought) or ""
            t = event.epoch_seconds
            if event.event_type is EventType.PURCHASE:
                bought.add(facts.product_id)
            if event.event_type in HISTORY_COUNT:
                for facet, key in facts.keys:
                    if facet in HISTORY_FACETS:
                        interactions[(self._term(key), self._history)].append((HISTORY_COUNT[event.event_type], t))
            signal = self.rules.signals[name]
            weight = signal.weight_for(event.context.time_on_page)
            if weight == 0.0:
                continue
            cls = self._class_of[signal.decay]
            for key in facts.keys_for(signal.facets):
                interactions[(self._term(key), cls)].append((weight, t))
            if weight > 0 and facts.price_ratio is not None:
                interactions[(self._price_ids[0], cls)].append((weight * facts.price_ratio, t))
                interactions[(self._price_ids[1], cls)].append((weight, t))
        sums: dict[Term, float] = defaultdict(float)
        best: dict[Term, tuple[float, int]] = {}
        history: dict[Term, tuple[float, float]] = {}
        for (fid, cls), items in interactions.items():
            decay = self._classes[cls][1]
            latest = max(t for _, t in items)
            if now - latest > decay.memory_days * 86_400.0:
                continue
            part = math.fsum(w * decay.factor ** ((now - t) / 86_400.0) for w, t in items)
            if cls == self._history:
                history[fid] = (part, max(0.0, now - latest) / 86_400.0)
                continue
            sums[fid] += part
            if abs(part) > best.get(fid, (0.0, 0))[0]:
                best[fid] = (abs(part), cls)
        return self._affinities(sums, best, history)


def _compact_json(value: object) -> str:
    return json.dumps(value, separators=(",", ":"))


def _json_len(text: str) -> int:
    """len(json.dumps(text)), without the call for printable ASCII (nothing but " and \\ escaped)."""
    if text.isascii() and text.isprintable() and '"' not in text and "\\" not in text:
        return len(text) + 2
    return len(_compact_json(text))
