"""Products and the catalog: validated rows, lookups and category price medians."""

from __future__ import annotations

import math
import statistics
import weakref
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from shared.domain.events import Id, Label
from shared.domain.rules import Facet
from shared.pacing import paced


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

    def __init__(self, products: Iterable[Product], version: int = 0, previous: Catalog | None = None) -> None:
        """`previous`, an earlier version holding some of the same product objects, saves their
        facet keys being worked out again."""
        self.version = version
        self.products: list[Product] = list(products)
        # Loops `paced`: a build in the background gives way to requests (shared/pacing.py).
        ids = [p.id for p in paced(self.products)]
        # Only the product list is a container the collector traverses: the lookups are an id -> row
        # dict of strings and ints and numpy object arrays, which it skips (a pass over a new
        # version's young containers is a pause for every request: shared/pacing.py).
        self.index = dict(zip(ids, paced(_rows(len(ids))), strict=True))  # product id -> position
        categories = [p.category.lower() for p in paced(self.products)]
        units = [unit_price(p.price, p.size) if p.price else math.nan for p in paced(self.products)]
        unit_prices: dict[str, list[float]] = defaultdict(list)
        for category, unit in paced(zip(categories, units, strict=True)):
            if unit == unit:  # not NaN: a price is known
                unit_prices[category].append(unit)
        self._median_unit_price = {c: statistics.median(v) for c, v in unit_prices.items()}
        self._keys = np.empty(len(self.products), dtype=object)  # row -> FacetKeys
        unchanged = self._held_rows(previous) if previous is not None else np.full(len(self.products), -1)
        # Kept for the index and the ranker's table, built on the same previous version next (weakly:
        # the previous version must go when it is replaced).
        self._rows_in_previous = (weakref.ref(previous), unchanged) if previous is not None else None
        for row, (product, was) in paced(enumerate(zip(self.products, unchanged.tolist(), strict=True))):
            self._keys[row] = (
                previous._keys[was]
                if previous is not None and was >= 0
                else facet_keys(product.id, product.brand, product.category, product.attributes)
            )
        medians = np.array([self._median_unit_price.get(c, math.nan) for c in paced(categories)], dtype=np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            ratios = np.log(np.array(units, dtype=np.float64) / medians)
        self._ratio = np.where(np.isinf(ratios), np.nan, ratios)  # row -> ratio, NaN when unknown

    def __len__(self) -> int:
        return len(self.products)

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
