"""Instant query suggestions: prefix matching over product names, brands, categories and the store's
frequent queries, with typo tolerance on the word being typed. Pure: no I/O."""

from __future__ import annotations

import re
import weakref
from abc import ABC, abstractmethod
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator
from rapidfuzz import process
from rapidfuzz.distance import Levenshtein

from shared.domain.catalog import Catalog, Product
from shared.domain.events import Id
from shared.pacing import paced

Kind = Literal["query", "category", "brand", "product"]
MAX_QUERY = 100
WORDS = re.compile(r"[^\w'&-]+")  # what separates words
KEY_BYTES = 32  # of a key's UTF-8 kept: a longer typed text matches on its first this many bytes
KEYS_PER_STEP = 5_000  # keys made into an array at a time (the list of them is short-lived)


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


class PrefixIndex(ABC):
    """Entries found by a prefix of any of their words ("whole mi" finds "Organic Whole Milk").

    The keys (each entry's text from each word on, the first `KEY_BYTES` bytes of its UTF-8) are one
    sorted byte-string array with their entries' ids beside it: no Python object per key, so a new
    index leaves the collector nothing to traverse and an old one frees at once (an index of 420,000
    key strings stalled searches for hundreds of milliseconds when a catalog version swapped in), and
    numpy sorts it without the interpreter's lock. Subclasses say what an entry id stands for."""

    weights: np.ndarray  # per entry id

    def __init__(self, keys: np.ndarray, owners: np.ndarray, words: Collection[str], ordered: bool = False) -> None:
        """`ordered`: the keys are sorted already."""
        order = slice(None) if ordered else np.argsort(keys, kind="stable")
        self.keys = keys[order]
        self.owners = owners[order]
        self.words = list(words)
        self._prefixes: dict[int, list[str]] = {}  # length -> the vocabulary's distinct prefixes of it

    @abstractmethod
    def entry(self, i: int) -> Entry:
        """What entry id `i` stands for."""

    @abstractmethod
    def owned(self, keys: Collection[str]) -> np.ndarray:
        """Ids of the entries the shopper's facet keys ("product:p1", "brand:oatly") stand for."""

    def matching(self, prefix: str) -> np.ndarray:
        """Ids of the entries with a word sequence starting with `prefix` (normalized)."""
        start = prefix.encode()[:KEY_BYTES]
        lo = int(np.searchsorted(self.keys, start, side="left"))
        hi = int(np.searchsorted(self.keys, start + b"\xff", side="left"))  # 0xff is in no UTF-8 text
        return np.unique(self.owners[lo:hi])

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
        closest = [p for p, _, _ in sorted(found, key=lambda f: (f[1], f[0]))]
        return [p for p in closest if not (word.startswith(p) or p.startswith(word))][:limit]


def keyed(texts: Iterable[tuple[int, str]]) -> tuple[np.ndarray, np.ndarray, set[str]]:
    """(keys, their owners, the words) of (owner, text) pairs, made in paced steps (shared/pacing.py)."""
    chunks, owners, words = [], [], set()
    found: list[bytes] = []
    mine: list[int] = []
    for owner, text in paced(texts):
        parts = normalized(text).split()
        words.update(parts)
        found += [" ".join(parts[j:]).encode()[:KEY_BYTES] for j in range(len(parts))]
        mine += [owner] * len(parts)
        if len(found) >= KEYS_PER_STEP:
            chunks.append(np.array(found, dtype=f"S{KEY_BYTES}"))
            owners.append(np.array(mine, dtype=np.int64))
            found, mine = [], []
    chunks.append(np.array(found, dtype=f"S{KEY_BYTES}"))
    owners.append(np.array(mine, dtype=np.int64))
    return np.concatenate(chunks), np.concatenate(owners), words


class EntryIndex(PrefixIndex):
    """A few entries given whole: the store's queries, the catalog's brands and categories."""

    def __init__(self, entries: Sequence[Entry]) -> None:
        self.entries = list(entries)
        super().__init__(*keyed((i, e.text) for i, e in enumerate(self.entries)))
        self.weights = np.array([e.weight for e in self.entries], dtype=np.float64)
        self.by_key = {key: i for i, e in enumerate(self.entries) if (key := e.key) is not None}

    def entry(self, i: int) -> Entry:
        return self.entries[i]

    def lacks(self, products: Iterable[Product]) -> bool:
        """Whether a product's brand or category is not among the entries."""
        return any(
            (p.brand and f"brand:{p.brand.strip().lower()}" not in self.by_key)
            or (p.category.strip() and f"category:{p.category.strip().lower()}" not in self.by_key)
            for p in products
        )

    def owned(self, keys: Collection[str]) -> np.ndarray:
        return np.array([i for key in keys if (i := self.by_key.get(key)) is not None], dtype=np.int64)


class ProductIndex(PrefixIndex):
    """A catalog version's product names; an entry id is the product's row. Built on the index of an
    earlier version, only the products that changed are worked out (the rest is array work)."""

    def __init__(self, catalog: Catalog, orders: np.ndarray, previous: ProductIndex | None = None) -> None:
        """`orders`: per row of `catalog`, the weight of each product (held, not copied). The catalog
        itself is held weakly: an index must not keep a replaced catalog version alive."""
        if previous is None:
            super().__init__(*keyed((row, p.name) for row, p in enumerate(catalog.products)))
        else:
            held = previous.rows_in(catalog)  # row here -> row there of the same product, else -1
            kept = np.flatnonzero(held >= 0)
            to_new = np.full(len(previous), -1, dtype=np.int64)
            to_new[held[kept]] = kept
            moved = to_new[previous.owners]  # each previous key's owner here (-1: changed or gone)
            still = moved >= 0
            fresh = np.flatnonzero(held < 0).tolist()
            keys, owners, words = keyed((row, catalog.products[row].name) for row in fresh)
            words.update(previous.words)
            # The new keys merged into the kept ones, still in order: no sort and no gather of the
            # whole array (a gather of 425,000 keys held the interpreter for up to 40 ms, measured).
            order = np.argsort(keys, kind="stable")
            keys, owners = keys[order], owners[order]
            kept_keys = previous.keys[still]
            at = np.searchsorted(kept_keys, keys, side="right")
            merged = np.insert(kept_keys, at, keys), np.insert(moved[still], at, owners)
            super().__init__(*merged, words, ordered=True)
        self.weights = orders
        self._catalog = weakref.ref(catalog)
        self.names = [p.name for p in paced(catalog.products)]  # the products' own strings, not copies
        self.ids = [p.id for p in paced(catalog.products)]
        self.rows = catalog.index  # product id -> row: the catalog's own lookup, shared

    def __len__(self) -> int:
        return len(self.names)

    def indexes(self, catalog: Catalog) -> bool:
        """Whether this is the index of `catalog`."""
        return self._catalog() is catalog

    def rows_in(self, catalog: Catalog) -> np.ndarray:
        """Each row of `catalog`: the row here of the same product, unchanged, else -1."""
        mine = self._catalog()
        if mine is not None:
            return catalog.rows_in(mine)
        rows, names = self.rows, self.names  # the catalog indexed here is gone: by id and name
        return np.fromiter(
            (r if (r := rows.get(p.id, -1)) >= 0 and names[r] == p.name else -1 for p in paced(catalog.products)),
            dtype=np.int64,
            count=len(catalog),
        )

    def entry(self, i: int) -> Entry:
        return Entry(self.names[i], "product", float(self.weights[i]), self.ids[i])

    def owned(self, keys: Collection[str]) -> np.ndarray:
        rows = [self.rows.get(key[8:]) for key in keys if key.startswith("product:")]
        return np.array([r for r in rows if r is not None], dtype=np.int64)


def facet_entries(catalog: Catalog, orders: np.ndarray) -> list[Entry]:
    """Each brand and category of the catalog, weighing what its products sell (`orders` per row)."""
    groups: dict[tuple[Kind, str], list] = {}  # (kind, lower-case name) -> [name, orders]
    for product, n in paced(zip(catalog.products, orders.tolist(), strict=True)):
        facets: tuple[tuple[Kind, str], ...] = (
            ("brand", (product.brand or "").strip()),
            ("category", product.category.strip()),
        )
        for kind, name in facets:
            if name:
                groups.setdefault((kind, name.lower()), [name, 0.0])[1] += n
    return [
        Entry(name, kind, n, brand=key if kind == "brand" else None, category=key if kind == "category" else None)
        for (kind, key), (name, n) in groups.items()
    ]


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
        own = ids[np.isin(ids, index.owned(shopper.keys))]
        if len(ids) > 4 * limit:  # the heaviest few, and every one the shopper owns among the rest
            ids = np.union1d(ids[np.argpartition(-index.weights[ids], 4 * limit)[: 4 * limit]], own)
        mine = set(own.tolist())
        candidates += [(i in mine, index.weights[i], n, index.entry(i)) for i in ids.tolist()]
    # The shopper's own first, then by index (the store's queries before the catalog), then by weight.
    for personal, _, _, entry in sorted(candidates, key=lambda c: (not c[0], c[2], -c[1], c[3].text)):
        add(entry.text, entry.kind, personal, entry.product_id)
    return out
