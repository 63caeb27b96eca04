"""The live shopper profile: decayed facet affinities, updated in O(1) per event.

Every (facet, decay class) pair is one accumulator holding `value`, the decayed sum of its
signal weights as of `ref`, the time of its latest interaction. Adding a weight w at time t is
exact: value(t') = value(ref) * factor ** ((t' - ref) / DAY) + w * factor ** ((t' - t) / DAY).
Reading at `now` gives sum(weight * factor ** age_days), the reference formula, for every pair
whose latest interaction is at most `memory_days` old; affinities are that sum over classes,
clipped to +-score_cap. Accumulators live in flat arrays to keep a profile near 1 KB.
"""

from __future__ import annotations

import hashlib
from array import array
from collections.abc import Iterator
from dataclasses import dataclass

DAY = 86_400.0


def event_hash(event_id: str) -> int:
    """A stable 64-bit digest of an event id, for the per-profile idempotency window."""
    return int.from_bytes(hashlib.blake2b(event_id.encode(), digest_size=8).digest(), "big")


class FacetIndex:
    """Interns facet keys ("brand:oatly") to small ints shared by every profile of an instance."""

    def __init__(self) -> None:
        self._ids: dict[str, int] = {}
        self._keys: list[str] = []

    def id_of(self, key: str) -> int:
        fid = self._ids.get(key)
        if fid is None:
            fid = self._ids[key] = len(self._keys)
            self._keys.append(key)
        return fid

    def find(self, key: str) -> int | None:
        return self._ids.get(key)

    def key_of(self, fid: int) -> str:
        return self._keys[fid]


class Profile:
    """One shopper's accumulators, idempotency window and preferred quantities."""

    __slots__ = ("user_id", "_ids", "_values", "_refs", "_recent", "_quantities")

    def __init__(self, user_id: str) -> None:
        self.user_id = user_id
        self._ids = array("l")  # accumulator id = facet id * n_classes + class index
        self._values = array("d")
        self._refs = array("d")  # epoch seconds of the latest interaction
        self._recent = array("Q")  # hashes of the latest applied event ids
        self._quantities = array("l")  # flat pairs: product facet id, last purchased quantity

    def __len__(self) -> int:
        return len(self._ids)

    def add(self, acc_id: int, weight: float, t: float, factor: float) -> None:
        """Add `weight` observed at time t to an accumulator decaying by `factor` per day."""
        try:
            i = self._ids.index(acc_id)
        except ValueError:
            self._ids.append(acc_id)
            self._values.append(weight)
            self._refs.append(t)
            return
        ref = self._refs[i]
        if t <= ref:  # late event: discount it to the accumulator's reference time
            self._values[i] += weight * factor ** ((ref - t) / DAY)
        else:
            self._values[i] = self._values[i] * factor ** ((t - ref) / DAY) + weight
            self._refs[i] = t

    def accumulators(self) -> Iterator[tuple[int, float, float]]:
        """(accumulator id, value at ref, ref) triples."""
        return zip(self._ids, self._values, self._refs, strict=True)

    def keep(self, predicate) -> None:
        """Drop every accumulator for which predicate(acc_id, ref) is false."""
        kept = [(a, v, r) for a, v, r in self.accumulators() if predicate(a, r)]
        self._ids = array("l", (a for a, _, _ in kept))
        self._values = array("d", (v for _, v, _ in kept))
        self._refs = array("d", (r for _, _, r in kept))

    def seen(self, digest: int) -> bool:
        return digest in self._recent

    def remember(self, digest: int, window: int) -> None:
        self._recent.append(digest)
        if len(self._recent) > window:
            del self._recent[0]

    def quantity(self, fid: int) -> int | None:
        q = self._quantities
        for i in range(0, len(q), 2):
            if q[i] == fid:
                return q[i + 1]
        return None

    def set_quantity(self, fid: int, quantity: int) -> None:
        q = self._quantities
        for i in range(0, len(q), 2):
            if q[i] == fid:
                q[i + 1] = quantity
                return
        q.extend((fid, quantity))

    def quantities(self) -> Iterator[tuple[int, int]]:
        q = self._quantities
        return ((q[i], q[i + 1]) for i in range(0, len(q), 2))


@dataclass(frozen=True, slots=True)
class Affinities:
    """A profile read at one instant: capped affinity and dominant decay class per facet key."""

    scores: dict[str, float]
    dominant: dict[str, str]
    price_preference: float | None  # mean log(price / category median) of liked items

    def of(self, key: str) -> float:
        return self.scores.get(key, 0.0)

    @property
    def empty(self) -> bool:
        return not self.scores and self.price_preference is None


def decayed(value: float, ref: float, now: float, factor: float) -> float:
    return value * factor ** (max(0.0, now - ref) / DAY)


def clip(value: float, cap: float) -> float:
    return max(-cap, min(cap, value))
