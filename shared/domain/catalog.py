"""Products and the catalog: validated rows, lookups and category price medians."""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from shared.domain.events import Id, Label


class Product(BaseModel):
    """One catalog item. Brand, category and attributes are normalised to lower case."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    id: Id
    name: str = Field(min_length=1, max_length=300)
    brand: Label
    category: Label
    department: Label
    attributes: tuple[Label, ...] = ()
    price: float = Field(ge=0, le=100_000)
    size: float | None = Field(default=None, gt=0)
    unit: str | None = Field(default=None, max_length=20)

    @field_validator("brand", "category", "department", mode="after")
    @classmethod
    def _lower(cls, value: str) -> str:
        return value.strip().lower()

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
    """Products by id, with the median price of each category (for price preference)."""

    def __init__(self, products: Iterable[Product]) -> None:
        self.products: list[Product] = list(products)
        self._by_id = {p.id: p for p in self.products}
        prices: dict[str, list[float]] = defaultdict(list)
        for p in self.products:
            prices[p.category].append(p.price)
        self._median_price = {c: statistics.median(v) for c, v in prices.items()}

    def __len__(self) -> int:
        return len(self.products)

    def get(self, product_id: str) -> Product | None:
        return self._by_id.get(product_id)

    def median_price(self, category: str) -> float | None:
        return self._median_price.get(category)
