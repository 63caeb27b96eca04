"""BM25 product search with bm25s (sparse matrices) and Snowball stemming, filters as numpy masks."""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import chain

import bm25s
import numpy as np
import Stemmer
from bm25s.scoring import _select_idf_scorer as select_idf_scorer
from bm25s.scoring import _select_tfc_scorer as select_tfc_scorer

from shared.domain.catalog import Catalog, Product
from shared.domain.search import Hits, SearchFilters
from shared.pacing import paced, paced_steps
from shared.ports.product_search import ProductSearch

_WORD = re.compile(r"\w+")
# Documents per step of an index build: each step's C calls hold the interpreter for about a
# millisecond, so searches served meanwhile by other threads wait no longer than that.
DOCS_PER_STEP = 2_000
# (document, token) entries per step of the array work on a whole corpus: a step of a fraction of
# a millisecond, where one operation over a 50,000-product corpus held the interpreter for 5 ms.
ENTRIES_PER_STEP = 65_536
logging.getLogger("bm25s").setLevel(logging.WARNING)  # it logs every index build at DEBUG


def _text(product: Product) -> str:
    """What a product is found by."""
    return " ".join((product.name, product.brand or "", product.category, product.department, *product.attributes))


@dataclass(frozen=True)
class Counts:
    """A corpus as term counts: one entry per (document, token) with its frequency, and each
    document's length in tokens. An index of the next catalog version carries the entries of the
    products it keeps, so only changed products are tokenized again."""

    doc: np.ndarray  # int32, the document (catalog row) of each entry
    token: np.ndarray  # int32, the token's id in `vocab`
    tf: np.ndarray  # int32
    lengths: np.ndarray  # int64 per document
    vocab: dict[str, int]

    @classmethod
    def of(cls, corpus: Sequence[Sequence[str]], vocab: dict[str, int] | None = None, first_doc: int = 0) -> Counts:
        """The counts of `corpus` (documents numbered from `first_doc`), new tokens added to `vocab`."""
        vocab = {} if vocab is None else vocab
        flat = list(chain.from_iterable(corpus))
        for token in dict.fromkeys(flat):
            vocab.setdefault(token, len(vocab))
        ids = np.fromiter(map(vocab.__getitem__, flat), dtype=np.int64, count=len(flat))
        lengths = np.fromiter(map(len, corpus), dtype=np.int64, count=len(corpus))
        docs = np.repeat(np.arange(first_doc, first_doc + len(corpus), dtype=np.int64), lengths)
        wide = max(len(vocab), 1)
        pairs, tf = np.unique(docs * wide + ids, return_counts=True)
        doc, token = np.divmod(pairs, wide)
        return cls(doc.astype(np.int32), token.astype(np.int32), tf.astype(np.int32), lengths, vocab)

    @classmethod
    def joined(cls, parts: Sequence[Counts], vocab: dict[str, int], lengths: np.ndarray) -> Counts:
        return cls(
            np.concatenate([p.doc for p in parts]) if parts else np.zeros(0, dtype=np.int32),
            np.concatenate([p.token for p in parts]) if parts else np.zeros(0, dtype=np.int32),
            np.concatenate([p.tf for p in parts]) if parts else np.zeros(0, dtype=np.int32),
            lengths,
            vocab,
        )

    def carried(self, new_of_old: np.ndarray) -> Counts:
        """The entries of the documents kept (`new_of_old[old doc]` >= 0), renumbered."""
        kept = new_of_old[self.doc] >= 0 if len(self.doc) else np.zeros(0, dtype=bool)
        return Counts(new_of_old[self.doc[kept]].astype(np.int32), self.token[kept], self.tf[kept], self.lengths,
                      self.vocab)  # fmt: skip


class VectorBM25(bm25s.BM25):
    """bm25s's BM25, its index built from term counts with array operations rather than a Python
    loop per document (bm25s invites overriding the build; the same scores, as a test checks), so a
    new catalog version is indexed in a fraction of a second."""

    def build_index_from_tokens(
        self, corpus_tokens: list[Sequence[str]], show_progress: bool = True, leave_progress: bool = False
    ) -> tuple[dict, dict[str, int]]:
        if self.method in self.methods_requiring_nonoccurrence:  # BM25L, BM25+: bm25s's own build
            return super().build_index_from_tokens(corpus_tokens, show_progress, leave_progress)
        counts = Counts.of(corpus_tokens)
        return self.scores_of(counts), counts.vocab

    def index_counts(self, counts: Counts) -> None:
        """Index a corpus given as counts (what `index` does with tokens)."""
        self.nonoccurrence_array = None
        self.scores = self.scores_of(counts)
        self.vocab_dict = counts.vocab | ({"": len(counts.vocab)} if "" not in counts.vocab else {})
        self.unique_token_ids_set = set(self.vocab_dict.values())

    def scores_of(self, counts: Counts) -> dict:
        self.nonoccurrence_array = None
        n_docs, n_vocab = len(counts.lengths), len(counts.vocab)
        df = _bincount(counts.token, n_vocab)  # documents per token: a token occurs once per document
        idf_of = select_idf_scorer(self.idf_method)  # per token (math.log): a loop over the vocabulary only
        idf = np.array([idf_of(int(d), N=n_docs) for d in df], dtype=self.dtype)
        tfc_of = select_tfc_scorer(self.method)
        l_avg = counts.lengths.mean() if n_docs else 1.0
        data = np.empty(len(counts.token), dtype=self.dtype)
        for part in paced_steps(len(data), ENTRIES_PER_STEP):
            tfc = tfc_of(
                tf_array=counts.tf[part].astype(self.dtype),
                l_d=counts.lengths[counts.doc[part]],
                l_avg=l_avg,
                k1=self.k1,
                b=self.b,
                delta=self.delta,
            )
            data[part] = idf[counts.token[part]] * tfc
        data, indices, indptr = _csc(
            data, counts.doc.astype(self.int_dtype, copy=False), counts.token.astype(self.int_dtype, copy=False), df
        )
        return {"data": data, "indices": indices, "indptr": indptr, "num_docs": n_docs}


def _bincount(values: np.ndarray, n: int) -> np.ndarray:
    counts = np.zeros(n, dtype=np.int64)
    for part in paced_steps(len(values), ENTRIES_PER_STEP):
        counts += np.bincount(values[part], minlength=n)
    return counts


def _csc(data: np.ndarray, rows: np.ndarray, cols: np.ndarray, col_counts: np.ndarray) -> tuple[np.ndarray, ...]:
    """bm25s's CSC build (`_np_csc_python`: entries sorted by column, then row), its array work in
    steps; the sort itself runs without the interpreter lock."""
    indptr = np.zeros(len(col_counts) + 1, dtype=np.int64)
    np.cumsum(col_counts, out=indptr[1:])
    packed = np.empty(len(cols), dtype=np.int64)
    for part in paced_steps(len(cols), ENTRIES_PER_STEP):
        packed[part] = (cols[part].astype(np.int64) << 32) | rows[part].astype(np.int64)
    sorter = np.argsort(packed)
    sorted_data, sorted_rows = np.empty_like(data), np.empty_like(rows)
    for part in paced_steps(len(sorter), ENTRIES_PER_STEP):
        sorted_data[part], sorted_rows[part] = data[sorter[part]], rows[sorter[part]]
    return sorted_data, sorted_rows, indptr


FIELDS = ("category", "department", "brand")


class Bm25sProductSearch(ProductSearch):
    """Indexes name, brand, category, department and attributes; filters without Python loops.

    Given the index of an earlier version of the catalog, it carries the term counts and filter
    values of every product both versions hold as the same object (and the counts of a changed
    product whose text is the same), so a version that changed a thousand products of fifty
    thousand tokenizes a thousand."""

    _price: np.ndarray
    _in_stock: np.ndarray
    _attribute_bit: dict[str, np.uint64]
    _attribute_bits: np.ndarray

    def __init__(self, catalog: Catalog, previous: ProductSearch | None = None) -> None:
        self._catalog = catalog
        self._products = catalog.products
        self._stemmer = Stemmer.Stemmer("english")
        self._stopwords = set(bm25s.stopwords.STOPWORDS_EN)
        before = previous if isinstance(previous, Bm25sProductSearch) else None
        rows = catalog.rows_in(before._catalog) if before is not None else np.full(len(catalog), -1)
        fresh = np.flatnonzero(rows < 0)
        self._counts = self._counts_of(rows, fresh, before)
        # Product titles are short and attribute lists lengthen them: mild length normalisation.
        self._index = VectorBM25(b=0.3)
        if len(self._products):  # an empty catalog finds nothing (search answers before asking the index)
            self._index.index_counts(self._counts)
        self._filters(rows, fresh, before)

    def _counts_of(self, rows: np.ndarray, fresh: np.ndarray, before: Bm25sProductSearch | None) -> Counts:
        """The corpus's counts: carried for the rows `before` held, tokenized for the `fresh` ones
        (unless a fresh product's text is the one it had)."""
        vocab = dict(before._counts.vocab) if before is not None else {}
        lengths = np.zeros(len(rows), dtype=np.int64)
        parts: list[Counts] = []
        if before is not None:
            new_of_old = np.full(len(before._products), -1, dtype=np.int64)
            same_text = [
                i for i in paced(fresh) if (old := before._catalog.get(self._products[i].id)) is not None
                and _text(old) == _text(self._products[i])
            ]  # fmt: skip
            # As arrays: converting lists of every row to index with held the interpreter for milliseconds.
            held = np.flatnonzero(rows >= 0)
            reused = np.concatenate([held, np.array(same_text, dtype=np.int64)])
            old_rows = np.concatenate([
                rows[held],
                np.array([before._catalog.index[self._products[i].id] for i in same_text], dtype=np.int64),
            ])  # fmt: skip
            new_of_old[old_rows] = reused
            parts.append(before._counts.carried(new_of_old))
            lengths[reused] = before._counts.lengths[old_rows]
            fresh = np.setdiff1d(fresh, same_text)
        for start in range(0, len(fresh), DOCS_PER_STEP):  # steps: each holds the interpreter briefly
            step = fresh[start : start + DOCS_PER_STEP]
            corpus = [tuple(self._tokens(_text(self._products[i]))) for i in paced(step)]
            counted = Counts.of(corpus, vocab)
            parts.append(Counts(step[counted.doc].astype(np.int32), counted.token, counted.tf, counted.lengths, vocab))
            lengths[step] = counted.lengths
        return Counts.joined(parts, vocab, lengths)

    def _filters(self, rows: np.ndarray, fresh: np.ndarray, before: Bm25sProductSearch | None) -> None:
        """Price, stock, category/department/brand codes and attribute bits per row: carried from
        `before` where it held the product, worked out for the `fresh` rows."""
        products = [self._products[i] for i in fresh]
        held = np.flatnonzero(rows >= 0)
        old = rows[held]

        def column(values: list, dtype: type, carried: np.ndarray | None) -> np.ndarray:
            out: np.ndarray = np.empty(len(rows), dtype=dtype)
            if carried is not None:
                out[held] = carried[old]
            out[fresh] = np.array(values, dtype=dtype) if values else np.zeros(0, dtype=dtype)
            return out

        # An unknown price is NaN: it passes no price filter.
        prices = [np.nan if p.price is None else p.price for p in products]
        self._price = column(prices, np.float64, before._price if before else None)
        self._in_stock = column([p.in_stock for p in products], bool, before._in_stock if before else None)
        self._all_in_stock = bool(self._in_stock.all())
        self._codes: dict[str, tuple[dict[str, int], np.ndarray]] = {}
        for field in FIELDS:
            vocabulary = dict(before._codes[field][0]) if before else {}
            values = [(getattr(p, field) or "").lower() for p in products]
            codes = [vocabulary.setdefault(v, len(vocabulary)) for v in values]
            self._codes[field] = (vocabulary, column(codes, np.int32, before._codes[field][1] if before else None))
        self._attribute_bit = dict(before._attribute_bit) if before else {}
        sets = [p.attributes for p in products]
        for name in sorted(set().union(*sets) - self._attribute_bit.keys()):
            if len(self._attribute_bit) < 64:  # beyond 64 attributes, a filter on one finds nothing
                self._attribute_bit[name] = np.uint64(1) << np.uint64(len(self._attribute_bit))
        bits_of = {found: sum(int(self._attribute_bit.get(a, 0)) for a in found) for found in set(sets)}
        carried_bits = before._attribute_bits if before else None
        self._attribute_bits = column([bits_of[found] for found in sets], np.uint64, carried_bits)

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
