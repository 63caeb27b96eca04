"""Instant query suggestions: prefix matching over product names, brands, categories and the store's
frequent queries, with typo tolerance on the word being typed. Pure: no I/O."""

from __future__ import annotations

import bisect
import re
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator
from rapidfuzz import process
from rapidfuzz.distance import Levenshtein

from shared.domain.catalog import Catalog
from shared.domain.events import Id
from shared.pacing import paced

Kind = Literal["query", "category", "brand", "product"]
MAX_QUERY = 100
WORDS = re.compile(r"[^\w'&-]+")  # what separates words
END = "\U0010ffff"  # sorts after every character: the end of a prefix's range
BUCKET = 2  # keys are kept in sorted buckets by their first this many characters


class SuggestRequest(BaseModel):
    """What the shopper has typed so far."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    q: str = Field(min_length=1, max_length=MAX_QUERY)
    user_id: Id | None = None
    limit: int = Field(default=8, ge=1, le=20)

    @field_validator("q", mode="after")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not normalized(value):
            raise ValueError("q is blank")
        return value


@dataclass(frozen=True, slots=True)
class Entry:
    text: str  # as shown
    kind: Kind
    weight: float  # orders (products, summed for brands and categories) or searches (queries)
    product_id: str | None = None
    brand: str | None = None  # lower case: a product's brand and category, for the shopper's affinities
    category: str | None = None

    @property
    def key(self) -> str | None:
        """The profile's facet key this entry stands for ("product:p1", "brand:oatly"), if any."""
        if self.kind == "product":
            return f"product:{self.product_id}"
        if self.kind in ("brand", "category"):
            return f"{self.kind}:{self.brand if self.kind == 'brand' else self.category}"
        return None


def normalized(text: str) -> str:
    """Lower case words (letters, digits, ', & and -) separated by single spaces."""
    return " ".join(WORDS.sub(" ", text.casefold()).split())


def max_edits(word: str) -> int:
    """Typos tolerated in a word being typed: none under 3 letters, 1 up to 5, then 2."""
    return 0 if len(word) < 3 else 1 if len(word) <= 5 else 2


class PrefixIndex:
    """Entries found by a prefix of any of their words ("whole mi" finds "Organic Whole Milk").

    The keys (each entry's text from each word on) are kept sorted in buckets by their first
    `BUCKET` characters: a build in the background then sorts many small lists, each giving way to
    requests (shared/pacing.py), never one list of every key, which held the interpreter for 100 ms
    and more."""

    def __init__(self, entries: Sequence[Entry]) -> None:
        self.entries = list(entries)
        buckets: dict[str, list[tuple[str, int]]] = {}
        words: set[str] = set()
        for i, entry in enumerate(paced(self.entries)):
            parts = normalized(entry.text).split()
            words.update(parts)
            for j in range(len(parts)):
                key = " ".join(parts[j:])
                buckets.setdefault(key[:BUCKET], []).append((key, i))
        self._keys: dict[str, list[str]] = {}
        self._owners: dict[str, np.ndarray] = {}
        for start, pairs in paced(list(buckets.items())):
            pairs.sort()
            self._keys[start] = [key for key, _ in pairs]
            self._owners[start] = np.array([owner for _, owner in pairs], dtype=np.int64)
        self._starts = sorted(self._keys)
        self.weights = np.array([e.weight for e in self.entries], dtype=np.float64)
        self.words = list(words)
        self.by_key = {facet: i for i, entry in enumerate(self.entries) if (facet := entry.key) is not None}
        self._prefixes: dict[int, list[str]] = {}  # length -> the vocabulary's distinct prefixes of it

    def __len__(self) -> int:
        return len(self.entries)

    def matching(self, prefix: str) -> np.ndarray:
        """Ids of the entries with a word sequence starting with `prefix` (normalized)."""
        if len(prefix) >= BUCKET:
            starts = [prefix[:BUCKET]] if prefix[:BUCKET] in self._keys else []
        else:  # every bucket whose start begins with the prefix
            lo = bisect.bisect_left(self._starts, prefix)
            starts = self._starts[lo : bisect.bisect_left(self._starts, prefix + END, lo)]
        found = []
        for start in starts:
            keys = self._keys[start]
            lo = bisect.bisect_left(keys, prefix)
            found.append(self._owners[start][lo : bisect.bisect_left(keys, prefix + END, lo)])
        return np.unique(np.concatenate(found)) if found else np.zeros(0, dtype=np.int64)

    def corrections(self, word: str, limit: int = 3) -> list[str]:
        """Prefixes of the vocabulary's words within `max_edits(word)` of `word`, closest first (none that
        is `word`, or a prefix of it, or extends it)."""
        edits = max_edits(word)
        if not edits:
            return []
        prefixes = self._prefixes.get(len(word))
        if prefixes is None:
            n = len(word)  # a letter too many or too few is a typo too: prefixes one shorter and longer
            prefixes = self._prefixes[n] = list({w[:m] for w in self.words for m in (n - 1, n, n + 1) if len(w) >= m})
        found = process.extract(word, prefixes, scorer=Levenshtein.distance, score_cutoff=edits, limit=limit + 3)
        # A shorter or longer prefix of the word itself is no correction: it finds the same words.
        return [
            p for p, _, _ in sorted(found, key=lambda f: (f[1], f[0])) if not (word.startswith(p) or p.startswith(word))
        ][:limit]


def catalog_entries(catalog: Catalog, orders: np.ndarray) -> list[Entry]:
    """Every product name, brand and category, weighted by orders (`orders`: per catalog row)."""
    by_brand: dict[str, list] = {}
    by_category: dict[str, list] = {}
    entries = []
    for product, n in paced(zip(catalog.products, orders.tolist(), strict=True)):
        brand, category = (product.brand or "").strip(), product.category.strip()
        entries.append(Entry(product.name, "product", n, product.id, brand.lower() or None, category.lower() or None))
        if brand:
            by_brand.setdefault(brand.lower(), [brand, 0.0])[1] += n
        if category:
            by_category.setdefault(category.lower(), [category, 0.0])[1] += n
    entries += [Entry(name, "brand", n, brand=key) for key, (name, n) in by_brand.items()]
    entries += [Entry(name, "category", n, category=key) for key, (name, n) in by_category.items()]
    return entries


def query_entries(queries: Iterable[dict], min_shoppers: int) -> list[Entry]:
    """The store's frequent queries that at least `min_shoppers` distinct shoppers searched (so that no
    one shopper's query is shown to others)."""
    return [
        Entry(str(q["query"]), "query", float(q.get("searches", 0)))
        for q in queries
        if int(q.get("shoppers", 0)) >= min_shoppers and normalized(str(q.get("query", "")))
    ]


@dataclass(frozen=True)
class Shopper:
    """What suggestions know of the shopper: their own past queries, and the facet keys of the
    products, brands and categories they bought or like ("product:p1", "brand:oatly", ...)."""

    queries: Sequence[str] = ()
    keys: Collection[str] = frozenset()


def suggest(
    typed: str, indexes: Sequence[PrefixIndex], limit: int, shopper: Shopper | None = None
) -> tuple[list[dict], str | None]:
    """(suggestions, the typed text as corrected, or None): the shopper's own past queries that start with
    it first, then the entries of `indexes` matching it (the shopper's own products, brands and
    categories first, then index by index, each by weight), one per text; when too few match, the same
    for the closest spellings of the word being typed."""
    prefix = normalized(typed)
    shopper = shopper or Shopper()
    found = _ranked(prefix, indexes, limit, shopper)
    corrected = None
    if len(found) < limit:
        head, _, last = prefix.rpartition(" ")
        for word in max((ix.corrections(last) for ix in indexes), key=len, default=[]):
            fixed = f"{head} {word}".strip()
            more = _ranked(fixed, indexes, limit, shopper)
            if more and corrected is None:
                corrected = fixed
            found += [s for s in more if s["text"].casefold() not in {f["text"].casefold() for f in found}]
            if len(found) >= limit:
                break
    return found[:limit], corrected


def _ranked(prefix: str, indexes: Sequence[PrefixIndex], limit: int, shopper: Shopper) -> list[dict]:
    out: list[dict] = []
    seen: set[str] = set()

    def add(text: str, kind: Kind, personal: bool, product_id: str | None = None) -> None:
        key = normalized(text)
        if key not in seen and len(out) < limit:
            seen.add(key)
            out.append({"text": text, "kind": kind, "product_id": product_id, "personal": personal})

    for query in shopper.queries:
        if normalized(query).startswith(prefix):
            add(query, "query", True)
    candidates: list[tuple[bool, float, int, Entry]] = []
    for n, index in enumerate(indexes):
        ids = index.matching(prefix)
        theirs = np.array([i for k in shopper.keys if (i := index.by_key.get(k)) is not None], dtype=np.int64)
        own = ids[np.isin(ids, theirs)]
        if len(ids) > 4 * limit:  # the heaviest few, and every one the shopper owns among the rest
            ids = np.union1d(ids[np.argpartition(-index.weights[ids], 4 * limit)[: 4 * limit]], own)
        mine = set(own.tolist())
        candidates += [(i in mine, index.weights[i], n, index.entries[i]) for i in ids.tolist()]
    # The shopper's own first, then by index (the store's queries before the catalog), then by weight.
    for personal, _, _, entry in sorted(candidates, key=lambda c: (not c[0], c[2], -c[1], c[3].text)):
        add(entry.text, entry.kind, personal, entry.product_id)
    return out
