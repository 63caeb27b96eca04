"""Products and the catalog: validated rows, lookups and category price medians."""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from shared.domain.events import Id, Label
from shared.domain.rules import Facet


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


class Catalog:
    """Products by id, with each product's facet keys and price level precomputed."""

    def __init__(self, products: Iterable[Product]) -> None:
        self.products: list[Product] = list(products)
        self._by_id = {p.id: p for p in self.products}
        self.index = {p.id: row for row, p in enumerate(self.products)}  # product id -> position
        unit_prices: dict[str, list[float]] = defaultdict(list)
        for p in self.products:
            if p.price:
                unit_prices[p.category.lower()].append(unit_price(p.price, p.size))
        self._median_unit_price = {c: statistics.median(v) for c, v in unit_prices.items()}
        self._keys = {p.id: facet_keys(p.id, p.brand, p.category, p.attributes) for p in self.products}
        self._ratio = {p.id: self.price_ratio_of(p, p.price) for p in self.products}

    def __len__(self) -> int:
        return len(self.products)

    def get(self, product_id: str) -> Product | None:
        return self._by_id.get(product_id)

    def rows_of(self, product_ids: Iterable[str]) -> list[int]:
        """Positions in `products` of the products this catalog knows."""
        return [self.index[p] for p in product_ids if p in self.index]

    def keys(self, product_id: str) -> FacetKeys:
        return self._keys[product_id]

    def price_ratio(self, product_id: str) -> float | None:
        """log(unit price / category median unit price): below 0 is cheaper than usual."""
        return self._ratio[product_id]

    def price_ratio_of(self, product: Product, price: float | None) -> float | None:
        median = self._median_unit_price.get(product.category.lower())
        if not median or not price:
            return None
        return math.log(unit_price(price, product.size) / median)


FacetKeys = tuple[tuple[Facet, str], ...]


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
