"""The live shopper profile: decayed facet affinities, updated in O(1) per event.

Every (facet, decay class) pair is one accumulator holding `value`, the decayed sum of its
signal weights as of `ref`, the time of its latest interaction. Adding a weight w at time t is
exact: value(t') = value(ref) * factor ** ((t' - ref) / DAY) + w * factor ** ((t' - t) / DAY).
Reading at `now` gives sum(weight * factor ** age_days), the reference formula, for every pair
whose latest interaction is at most `memory_days` old; affinities are that sum over classes,
clipped to +-score_cap. Accumulators live in flat arrays sorted by id (binary search, no
per-entry objects), and `ref` is kept in whole seconds: an event at t counts as of ceil(t),
discounted by factor ** ((ceil(t) - t) / DAY), which is exact.
"""

from __future__ import annotations

import bisect
import math
import zlib
from array import array
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

DAY = 86_400.0


def event_hash(event_id: str) -> int:
    """A stable 64-bit fingerprint of an event id (CRC-32 and Adler-32), for the idempotency window.

    Stable across processes (unlike hash()) and four times cheaper than a cryptographic digest;
    collisions only matter within one shopper's last few dozen events.
    """
    data = event_id.encode()
    return zlib.crc32(data) << 32 | zlib.adler32(data)


class FacetIndex:
    """Interns facet keys ("brand:oatly") to small ints shared by every profile of an instance.

    It holds only keys the engine adds (the catalog's, and the price accumulators'), so it is
    bounded by the catalog; a key the catalog does not know lives in the profile that uses it
    (`Profile.local_id`). A new catalog only needs its keys added.
    """

    def __init__(self) -> None:
        self._ids: dict[str, int] = {}
        self._keys: list[str] = []

    def add(self, key: str) -> int:
        fid = self._ids.get(key)
        if fid is None:
            fid = self._ids[key] = len(self._keys)
            self._keys.append(key)
        return fid

    def get(self, key: str) -> int | None:
        return self._ids.get(key)

    def key_of(self, fid: int) -> str:
        return self._keys[fid]

    def __len__(self) -> int:
        return len(self._keys)


class Profile:
    """One shopper's accumulators, idempotency window, preferred quantities and own facet keys.

    A facet id is either the instance's (`FacetIndex`, >= 0) or this profile's own (-1, -2, ...)
    for a key the catalog does not know; the accumulator id fid * n_classes + class index stays
    decodable with divmod for both.
    """

    __slots__ = ("_ids", "_local_ids", "_local_keys", "_quantities", "_recent", "_refs", "_values", "user_id")

    def __init__(self, user_id: str) -> None:
        self.user_id = user_id
        self._ids = array("i")  # sorted; accumulator id = facet id * n_classes + class index
        self._values = array("d")
        self._refs = array("I")  # epoch seconds (rounded up) of the latest interaction
        self._recent = array("Q")  # hashes of the latest applied event ids
        self._quantities = array("i")  # flat pairs: product facet id, last purchased quantity
        self._local_keys: list[str] | None = None  # key of local facet id -(i + 1); None until one is needed
        self._local_ids: dict[str, int] | None = None

    def __len__(self) -> int:
        return len(self._ids)

    def add(self, acc_ids: Iterable[int], weight: float, t: float, factor: float) -> None:
        """Add `weight`, observed at time t, to accumulators decaying by `factor` per day."""
        ids, values, refs = self._ids, self._values, self._refs
        ceil_t = math.ceil(t)
        fresh = weight * factor ** ((ceil_t - t) / DAY)  # the weight as of ceil(t)
        for acc_id in acc_ids:
            i = bisect.bisect_left(ids, acc_id)
            if i == len(ids) or ids[i] != acc_id:
                ids.insert(i, acc_id)
                values.insert(i, fresh)
                refs.insert(i, ceil_t)
                continue
            ref = refs[i]
            if ceil_t <= ref:  # a late event: discount it to the accumulator's reference time
                values[i] += weight * factor ** ((ref - t) / DAY)
            else:
                values[i] = values[i] * factor ** ((ceil_t - ref) / DAY) + fresh
                refs[i] = ceil_t

    def accumulators(self) -> Iterator[tuple[int, float, int]]:
        """(accumulator id, value at ref, ref) triples."""
        return zip(self._ids, self._values, self._refs, strict=True)

    def load(
        self,
        accumulators: Iterable[tuple[int, float, int]],
        recent: Iterable[int],
        quantities: Iterable[tuple[int, int]],
        local_keys: Iterable[str] = (),
    ) -> None:
        """Replace the whole state (accumulators in any order; local facet id -(i + 1) is local_keys[i])."""
        ordered = sorted(accumulators)
        self._ids = array("i", (a for a, _, _ in ordered))
        self._values = array("d", (v for _, v, _ in ordered))
        self._refs = array("I", (r for _, _, r in ordered))
        self._recent = array("Q", recent)
        self._quantities = array("i", (x for pair in quantities for x in pair))
        keys = list(local_keys)
        self._local_keys = keys or None
        self._local_ids = {key: -i - 1 for i, key in enumerate(keys)} or None

    def local_id(self, key: str) -> int:
        """This profile's own (negative) facet id for a key the instance's index does not hold."""
        if self._local_ids is None or self._local_keys is None:
            self._local_ids, self._local_keys = {}, []
        fid = self._local_ids.get(key)
        if fid is None:
            self._local_keys.append(key)
            fid = self._local_ids[key] = -len(self._local_keys)
        return fid

    def local_key(self, fid: int) -> str:
        assert self._local_keys is not None, "a local facet id of a profile without local keys"
        return self._local_keys[-fid - 1]

    def local_keys(self) -> list[str]:
        """The profile's own facet keys, in local id order (-1 first)."""
        return list(self._local_keys or ())

    def recent(self) -> list[int]:
        """Hashes of the latest applied event ids, oldest first."""
        return list(self._recent)

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
    # The ranking's long horizon: key -> (decayed purchase count, days since the latest purchase).
    history: dict[str, tuple[float, float]] = field(default_factory=dict)

    def of(self, key: str) -> float:
        return self.scores.get(key, 0.0)

    @property
    def empty(self) -> bool:
        return not self.scores and self.price_preference is None and not self.history

    def bought(self) -> list[str]:
        """The product ids in the long-horizon purchase memory."""
        return [key[8:] for key in self.history if key.startswith("product:")]


def decayed(value: float, ref: float, now: float, factor: float) -> float:
    return value * factor ** (max(0.0, now - ref) / DAY)


def clip(value: float, cap: float) -> float:
    return max(-cap, min(cap, value))
