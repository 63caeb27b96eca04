"""BM25 product search with bm25s (sparse matrices) and Snowball stemming, filters as numpy masks."""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence

import bm25s
import numpy as np
import Stemmer

from shared.domain.catalog import Catalog
from shared.domain.search import Hits, SearchFilters
from shared.ports.product_search import ProductSearch

_WORD = re.compile(r"\w+")
logging.getLogger("bm25s").setLevel(logging.WARNING)  # it logs every index build at DEBUG


class Bm25sProductSearch(ProductSearch):
    """Indexes name, brand, category, department and attributes; filters without Python loops."""

    def __init__(self, catalog: Catalog) -> None:
        self._products = catalog.products
        self._stemmer = Stemmer.Stemmer("english")
        self._stopwords = set(bm25s.stopwords.STOPWORDS_EN)
        texts = [
            " ".join((p.name, p.brand or "", p.category, p.department, " ".join(p.attributes))) for p in self._products
        ]
        # Product titles are short and attribute lists lengthen them: mild length normalisation.
        self._index = bm25s.BM25(b=0.3)
        self._index.index([self._tokens(t) for t in texts], show_progress=False)
        # An unknown price is NaN: it passes no price filter.
        self._price = np.array([np.nan if p.price is None else p.price for p in self._products], dtype=np.float64)
        self._codes = {
            field: self._encode([(getattr(p, field) or "").lower() for p in self._products])
            for field in ("category", "department", "brand")
        }
        attribute_names = sorted({a for p in self._products for a in p.attributes})
        self._attribute_bit = {a: np.uint64(1) << np.uint64(i) for i, a in enumerate(attribute_names[:64])}
        self._in_stock = np.array([p.in_stock for p in self._products], dtype=bool)
        self._all_in_stock = bool(self._in_stock.all())
        self._attribute_bits = np.array(
            [sum(int(self._attribute_bit.get(a, 0)) for a in p.attributes) for p in self._products],
            dtype=np.uint64,
        )

    @staticmethod
    def _encode(values: list[str]) -> tuple[dict[str, int], np.ndarray]:
        vocabulary = {v: i for i, v in enumerate(sorted(set(values)))}
        return vocabulary, np.array([vocabulary[v] for v in values], dtype=np.int32)

    def _tokens(self, text: str) -> list[str]:
        words = [w for w in _WORD.findall(text.lower()) if w not in self._stopwords]
        return self._stemmer.stemWords(words)

    def _mask(self, filters: SearchFilters) -> np.ndarray | None:
        mask: np.ndarray | None = None

        def both(m: np.ndarray) -> None:
            nonlocal mask
            mask = m if mask is None else mask & m

        if not filters.include_out_of_stock and not self._all_in_stock:
            both(self._in_stock)
        for field in ("category", "department", "brand"):
            wanted = getattr(filters, field)
            if wanted is not None:
                vocabulary, codes = self._codes[field]
                both(codes == vocabulary.get(wanted, -1))
        if filters.attributes:
            if any(a not in self._attribute_bit for a in filters.attributes):
                both(np.zeros(len(self._products), dtype=bool))
            else:
                need = np.uint64(sum(int(self._attribute_bit[a]) for a in filters.attributes))
                both((self._attribute_bits & need) == need)
        if filters.min_price is not None:
            both(self._price >= filters.min_price)
        if filters.max_price is not None:
            both(self._price <= filters.max_price)
        return mask

    def search(self, query: str, filters: SearchFilters, limit: int, include: Sequence[int] = ()) -> Hits:
        tokens = self._tokens(query)
        if not tokens or not self._products:
            return Hits.empty()
        scores = self._index.get_scores(tokens)
        mask = self._mask(filters)
        if mask is not None:
            scores = np.where(mask, scores, 0.0)
        matching = np.flatnonzero(scores > 0)
        if len(matching) > limit:
            top = np.argpartition(-scores[matching], limit - 1)[:limit]
            extra = np.asarray(include, dtype=np.int64)
            extra = extra[(extra >= 0) & (extra < len(scores))]
            matching = np.union1d(matching[top], extra[scores[extra] > 0])
        order = matching[np.lexsort((matching, -scores[matching]))]
        return Hits(order.astype(np.int64), scores[order].astype(np.float64))
