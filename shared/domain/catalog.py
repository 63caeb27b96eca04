"""Products and the catalog: validated rows, lookups and category price medians."""

from __future__ import annotations

import math
import weakref
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from shared.domain.events import Id, Label
from shared.domain.rules import Facet
from shared.pacing import paced, paced_steps

ROWS_PER_STEP = 10_000  # rows of a new version's arrays carried or worked out per step (shared/pacing.py)


class Product(BaseModel):
    """One catalog item. Attributes are normalised to lower case; names keep their case for display."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    id: Id
    name: str = Field(min_length=1, max_length=300)
    category: Label
    department: Label
    # A real catalog often lacks these: no brand means no brand facet, no price no price level.
    brand: str | None = Field(default=None, max_length=80)
    attributes: tuple[Label, ...] = ()
    price: float | None = Field(default=None, ge=0, le=100_000)
    size: float | None = Field(default=None, gt=0)
    unit: str | None = Field(default=None, max_length=20)
    in_stock: bool = True  # search, rank and recommendations leave out what is not, unless asked

    @field_validator("name", "category", "department", mode="after")
    @classmethod
    def _strip(cls, value: str) -> str:
        return value.strip()

    @field_validator("brand", mode="after")
    @classmethod
    def _brand_or_none(cls, value: str | None) -> str | None:
        return (value or "").strip() or None

    @field_validator("attributes", mode="before")
    @classmethod
    def _split_attributes(cls, value: object) -> object:
        # CSV cells carry attributes as "organic|vegan"; JSON carries a list.
        if isinstance(value, str):
            value = [part for part in value.replace(",", "|").split("|") if part.strip()]
        if isinstance(value, list | tuple):
            return tuple(sorted({str(v).strip().lower() for v in value}))
        return value


@dataclass(frozen=True, slots=True)
class RowError:
    line: int
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.message}"


class CatalogError(ValueError):
    """Some catalog rows are invalid; `errors` names each one."""

    def __init__(self, errors: list[RowError]) -> None:
        self.errors = errors
        shown = "\n".join(str(e) for e in errors[:20])
        more = f"\n... and {len(errors) - 20} more" if len(errors) > 20 else ""
        super().__init__(f"{len(errors)} invalid catalog row(s):\n{shown}{more}")


def parse_products(rows: Iterable[tuple[int, Mapping[str, object]]]) -> list[Product]:
    """Validate (line number, row) pairs; raise CatalogError listing every bad row."""
    products: list[Product] = []
    errors: list[RowError] = []
    seen: set[str] = set()
    for line, row in rows:
        try:
            product = Product.model_validate(row)
        except ValidationError as exc:
            for err in exc.errors():
                field = ".".join(str(p) for p in err["loc"]) or "<row>"
                errors.append(RowError(line, f"{field}: {err['msg']}"))
            continue
        if product.id in seen:
            errors.append(RowError(line, f"id: duplicate product id {product.id!r}"))
            continue
        seen.add(product.id)
        products.append(product)
    if errors:
        raise CatalogError(errors)
    return products


MAX_BATCH_PRODUCTS = 1_000  # per admin API call


class ProductPatch(BaseModel):
    """A partial update of a product the catalog holds: only the fields given change (null clears
    an optional one)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: Id
    name: str | None = Field(default=None, min_length=1, max_length=300)
    category: Label | None = None
    department: Label | None = None
    brand: str | None = Field(default=None, max_length=80)
    attributes: tuple[Label, ...] | None = None
    price: float | None = Field(default=None, ge=0, le=100_000)
    size: float | None = Field(default=None, gt=0)
    unit: str | None = Field(default=None, max_length=20)
    in_stock: bool | None = None

    @model_validator(mode="after")
    def _required_stay(self) -> ProductPatch:
        for field in ("name", "category", "department", "attributes", "in_stock"):
            if field in self.model_fields_set and getattr(self, field) is None:
                raise ValueError(f"{field} cannot be cleared")
        if self.model_fields_set <= {"id"}:
            raise ValueError("nothing to change: give at least one field besides id")
        return self

    def applied_to(self, product: Product) -> Product:
        changes = {f: getattr(self, f) for f in self.model_fields_set if f != "id"}
        return Product.model_validate(product.model_dump() | changes)


class StrictProduct(Product):
    """A product as the API takes it: an unknown field is an error (a file import ignores extra columns)."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class CatalogUpsert(BaseModel):
    """PUT /api/catalog/products: products added or replaced whole."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    products: tuple[StrictProduct, ...] = Field(min_length=1, max_length=MAX_BATCH_PRODUCTS)


class CatalogPatch(BaseModel):
    """PATCH /api/catalog/products: partial updates of products the catalog holds."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    products: tuple[ProductPatch, ...] = Field(min_length=1, max_length=MAX_BATCH_PRODUCTS)


class CatalogDelete(BaseModel):
    """DELETE /api/catalog/products: products removed (an id the catalog lacks is no error)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    ids: tuple[Id, ...] = Field(min_length=1, max_length=MAX_BATCH_PRODUCTS)


@dataclass(frozen=True)
class CatalogChange:
    """One change of the catalog, applied whole or not at all: products upserted, patched, deleted."""

    upserts: tuple[Product, ...] = ()
    patches: tuple[ProductPatch, ...] = ()
    deletes: tuple[str, ...] = ()

    def applied_to(self, products: dict[str, Product]) -> dict[str, Product]:
        """The products after this change (a new dict); a patch of a product that is not there
        is an error naming it, and then nothing changes. Deleting a missing product is not."""
        upserted = {u.id for u in self.upserts}
        missing = [
            RowError(i + 1, f"id: no product {p.id!r} to patch")
            for i, p in enumerate(self.patches)
            if p.id not in products and p.id not in upserted
        ]
        if missing:
            raise CatalogError(missing)
        changed = dict(products)
        changed.update((p.id, p) for p in self.upserts)
        for patch in self.patches:
            changed[patch.id] = patch.applied_to(changed[patch.id])
        for product_id in self.deletes:
            changed.pop(product_id, None)
        return changed

    def __len__(self) -> int:
        return len(self.upserts) + len(self.patches) + len(self.deletes)


class Catalog:
    """Products by id, with each product's facet keys and price level precomputed; `version` is
    the catalog store's (0: a catalog no store holds, such as a test's)."""

    def __init__(
        self,
        products: Iterable[Product],
        version: int = 0,
        previous: Catalog | None = None,
        *,
        held: np.ndarray | None = None,
    ) -> None:
        """`previous`, an earlier version holding some of the same product objects, lends what was
        worked out for them: facet keys, category, unit price, and the id lookup when no product
        moved row. `held` (from `amended`) says which rows of `previous` they are; without it they
        are found by identity."""
        self.version = version
        self.products: list[Product] = list(products)
        n = len(self.products)
        if previous is None:
            held = np.full(n, -1, dtype=np.int64)
        elif held is None:
            held = self._held_rows(previous)
        held.flags.writeable = False
        # Kept for the index and the ranker's table, built on the same previous version next (weakly:
        # the previous version must go when it is replaced).
        self._rows_in_previous = (weakref.ref(previous), held) if previous is not None else None
        fresh = np.flatnonzero(held < 0).tolist()
        carried = np.flatnonzero(held >= 0)
        # Loops are `paced` and array work goes in steps: a build in the background gives way to
        # requests (shared/pacing.py). Only the product list is a container the collector traverses:
        # the lookups are a dict of strings and ints and numpy arrays, which it skips (a pass over a
        # new version's young containers is a pause for every request).
        self.index = self._index_of(previous, held, fresh)  # product id -> position
        self._category_names: list[str] = list(previous._category_names) if previous is not None else []
        code_of = {name: code for code, name in enumerate(self._category_names)}
        self._keys = np.empty(n, dtype=object)  # row -> FacetKeys
        self._category = np.empty(n, dtype=np.int64)  # row -> category code
        self._unit = np.empty(n, dtype=np.float64)  # row -> unit price, NaN when unknown
        if previous is not None:
            for step in paced_steps(len(carried), ROWS_PER_STEP):
                rows, was = carried[step], held[carried[step]]
                self._keys[rows], self._category[rows], self._unit[rows] = (
                    previous._keys[was], previous._category[was], previous._unit[was]
                )  # fmt: skip
        for row in paced(fresh):
            p = self.products[row]
            self._keys[row] = facet_keys(p.id, p.brand, p.category, p.attributes)
            self._category[row] = code_of.setdefault(p.category.lower(), len(code_of))
            self._unit[row] = unit_price(p.price, p.size) if p.price else math.nan
        self._category_names = list(code_of)
        # A category's median changes only when one of its products came, went or changed.
        self._medians = np.full(len(code_of), np.nan)
        if previous is None:
            touched: list[int] = list(range(len(code_of)))
        else:
            self._medians[: len(previous._medians)] = previous._medians
            touched = np.unique(self._touched_categories(previous, held, fresh)).tolist()
        for code in paced(touched):
            units = self._unit[self._category == code]
            units = units[~np.isnan(units)]
            self._medians[code] = float(np.median(units)) if len(units) else np.nan
        self._median_unit_price = {
            name: median for name, median in zip(self._category_names, self._medians.tolist(), strict=True)
            if median == median
        }  # fmt: skip
        self._ratio = np.empty(n, dtype=np.float64)  # row -> ratio, NaN when unknown
        with np.errstate(divide="ignore", invalid="ignore"):
            for step in paced_steps(n, ROWS_PER_STEP):
                ratios = np.log(self._unit[step] / self._medians[self._category[step]])
                self._ratio[step] = np.where(np.isinf(ratios), np.nan, ratios)

    @classmethod
    def amended(cls, previous: Catalog, upserted: Iterable[Product], deleted: Iterable[str], version: int) -> Catalog:
        """`previous` with the products `deleted` (ids) removed, then `upserted` added or replacing the
        product of the same id (the last of an id given twice), as version `version`: the work is
        that of the products changed, and each stays at its row when none is deleted."""
        products = list(previous.products)
        held = np.arange(len(products), dtype=np.int64)
        gone = np.zeros(len(products), dtype=bool)
        for product_id in deleted:
            if (row := previous.index.get(product_id)) is not None:
                gone[row] = True
        added: dict[str, Product] = {}
        for product in paced(upserted):
            if (row := previous.index.get(product.id)) is None:
                added[product.id] = product
            else:
                products[row], held[row], gone[row] = product, -1, False
        if gone.any():
            products = [p for p, out in paced(zip(products, gone.tolist(), strict=True)) if not out]
            held = held[~gone]
        held = np.concatenate([held, np.full(len(added), -1, dtype=np.int64)])
        return cls([*products, *added.values()], version, previous, held=held)

    def _index_of(self, previous: Catalog | None, held: np.ndarray, fresh: list[int]) -> dict[str, int]:
        """The id -> row lookup: the previous one, amended at the fresh rows, when every product it
        held is at the same row (a change with no delete); else built anew."""
        if previous is not None and self._rows_kept(previous, held, fresh):
            index = previous.index.copy()
            rows = _rows(len(self.products))
            for row in paced(fresh):
                index[self.products[row].id] = rows[row]
            return index
        ids = [p.id for p in paced(self.products)]
        return dict(zip(ids, paced(_rows(len(ids))), strict=True))

    def _rows_kept(self, previous: Catalog, held: np.ndarray, fresh: list[int]) -> bool:
        """Every row of `previous` is the same product id at the same row here."""
        m = len(previous.products)
        if len(self.products) < m or (held[m:] >= 0).any():
            return False
        first = held[:m]
        if ((first >= 0) & (first != np.arange(m))).any():
            return False
        return all(self.products[r].id == previous.products[r].id for r in paced(fresh) if r < m)

    def _touched_categories(self, previous: Catalog, held: np.ndarray, fresh: list[int]) -> np.ndarray:
        """Categories of the products that came, changed or went since `previous`."""
        still = np.zeros(len(previous.products), dtype=bool)
        still[held[held >= 0]] = True
        return np.concatenate([self._category[fresh], previous._category[~still]])

    def __len__(self) -> int:
        return len(self.products)

    @property
    def category_codes(self) -> np.ndarray:
        """Each row's category as a code into `category_names` (read-only)."""
        view = self._category.view()
        view.flags.writeable = False
        return view

    @property
    def category_names(self) -> list[str]:
        """Lower-case category names by code (a code once given keeps its name in later versions)."""
        return self._category_names

    def rows_in(self, previous: Catalog) -> np.ndarray:
        """Each product's row in `previous` when `previous` holds the very same product object (a
        product no change touched), else -1: what an index of `previous` can carry over (read-only)."""
        known = self._rows_in_previous
        return known[1] if known is not None and known[0]() is previous else self._held_rows(previous)

    def _held_rows(self, previous: Catalog) -> np.ndarray:
        held, at = previous.products, previous.index
        rows = np.fromiter(
            (row if (row := at.get(p.id, -1)) >= 0 and held[row] is p else -1 for p in paced(self.products)),
            dtype=np.int64,
            count=len(self.products),
        )
        rows.flags.writeable = False
        return rows

    def get(self, product_id: str) -> Product | None:
        row = self.index.get(product_id)
        return None if row is None else self.products[row]

    def rows_of(self, product_ids: Iterable[str]) -> list[int]:
        """Positions in `products` of the products this catalog knows."""
        return [self.index[p] for p in product_ids if p in self.index]

    def keys(self, product_id: str) -> FacetKeys:
        return self._keys[self.index[product_id]]

    def price_ratio(self, product_id: str) -> float | None:
        """log(unit price / category median unit price): below 0 is cheaper than usual."""
        ratio = float(self._ratio[self.index[product_id]])
        return None if ratio != ratio else ratio

    @property
    def price_ratios(self) -> np.ndarray:
        """Each row's price ratio (NaN when unknown), read-only."""
        view = self._ratio.view()
        view.flags.writeable = False
        return view

    def price_ratio_of(self, product: Product, price: float | None) -> float | None:
        median = self._median_unit_price.get(product.category.lower())
        if not median or not price:
            return None
        return math.log(unit_price(price, product.size) / median)


FacetKeys = tuple[tuple[Facet, str], ...]

_ROWS: tuple[int, ...] = ()


def _rows(n: int) -> tuple[int, ...]:
    """The row numbers 0..n-1 as the same int objects for every version: freeing a version's index
    (a pause for every request, being one call) then frees no ints (it took 2 ms at 50,000 rows)."""
    global _ROWS
    if len(_ROWS) < n:
        _ROWS = tuple(range(max(n, 2 * len(_ROWS))))
    return _ROWS[:n]


def facet_keys(product_id: str, brand: str | None, category: str | None, attributes: Iterable[str]) -> FacetKeys:
    """(facet, profile key) pairs of a product, e.g. ("brand", "brand:oatly")."""
    keys: list[tuple[Facet, str]] = [("product", f"product:{product_id}")]
    if brand:
        keys.append(("brand", f"brand:{brand.lower()}"))
    if category:
        keys.append(("category", f"category:{category.lower()}"))
    keys.extend(("attribute", f"attribute:{a}") for a in sorted({a.lower() for a in attributes}))
    return tuple(keys)


def unit_price(price: float, size: float | None) -> float:
    return price / size if size else price
