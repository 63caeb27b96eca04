"""A deterministic, realistic grocery catalog for the demo and the benchmarks.

Each category has signature product lines (brand, base name, fixed attributes), variants that
add words and attributes, and sizes; regional brands fill the long tail. The same seed and size
always give the same catalog.
"""

from __future__ import annotations

import functools
import random
from collections.abc import Iterator
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, field_validator

from shared.domain.catalog import Product

DATA = Path(__file__).with_name("grocery_categories.yaml")


class CategorySpec(BaseModel):
    """One category: signature product lines, variants and sizes (see grocery_categories.yaml)."""

    model_config = ConfigDict(frozen=True)

    department: str
    category: str
    unit: str
    sizes: tuple[float, ...]
    price: tuple[float, float]  # typical price range for the smallest size
    lines: tuple[tuple[str, str, tuple[str, ...]], ...]  # brand, base name, attributes
    variants: tuple[tuple[str, tuple[str, ...]], ...]  # leading words, attributes they add

    @field_validator("variants", mode="before")
    @classmethod
    def _split_variants(cls, value: list[str]) -> list[tuple[str, list[str]]]:
        # "Leading words:attr1|attr2"
        pairs = (v.partition(":") for v in value)
        return [(words, [a for a in attrs.split("|") if a]) for words, _, attrs in pairs]


class GroceryData(BaseModel):
    categories: tuple[CategorySpec, ...]
    regional_brands: tuple[str, ...]
    regional_attributes: tuple[str, ...]
    packs: tuple[str, ...]


Line = tuple[str, str, tuple[str, ...]]
Candidate = tuple[Line, tuple[str, tuple[str, ...]], int, str]  # line, variant, size index, pack


@functools.cache
def grocery_data() -> GroceryData:
    return GroceryData.model_validate(yaml.safe_load(DATA.read_text(encoding="utf-8")))


def _candidates(spec: CategorySpec, data: GroceryData) -> Iterator[Candidate]:
    regional = [(brand, *spec.lines[i % len(spec.lines)][1:]) for i, brand in enumerate(data.regional_brands)]
    for line in [*spec.lines, *regional]:
        for variant in spec.variants:
            for size_index in range(len(spec.sizes)):
                for pack in data.packs:
                    yield line, variant, size_index, pack


def generate_catalog(size: int = 5_000, seed: int = 7) -> list[Product]:
    """`size` products spread over every category, with realistic names, attributes and prices."""
    data = grocery_data()
    rng = random.Random(seed)
    per_spec = [list(_candidates(spec, data)) for spec in data.categories]
    capacity = sum(len(c) for c in per_spec)
    if size > capacity:
        raise ValueError(f"the generator can make at most {capacity} distinct products")
    picks: list[tuple[CategorySpec, Candidate]] = []
    # Signature lines first so every catalog size has the well-known products.
    for spec, candidates in zip(data.categories, per_spec, strict=True):
        first = [c for c in candidates if c[1] == spec.variants[0] and c[2] == 0 and c[3] == "" and c[0] in spec.lines]
        picks.extend((spec, c) for c in first)
    chosen = {(s.category, c) for s, c in picks}
    rest = [
        (spec, c)
        for spec, cs in zip(data.categories, per_spec, strict=True)
        for c in cs
        if (spec.category, c) not in chosen
    ]
    rng.shuffle(rest)
    picks = (picks + rest)[:size]
    return [_product(i, spec, candidate, data, rng) for i, (spec, candidate) in enumerate(picks)]


def _product(index: int, spec: CategorySpec, candidate: Candidate, data: GroceryData, rng: random.Random) -> Product:
    (brand, base, line_attrs), (words, variant_attrs), size_index, pack = candidate
    attrs = set(line_attrs) | set(variant_attrs)
    if brand in data.regional_brands and rng.random() < 0.5:
        attrs.add(rng.choice(data.regional_attributes))
    size = spec.sizes[size_index]
    low, high = spec.price
    price = rng.uniform(low, high) * (1 + 0.6 * size_index) * (1.8 if pack else 1.0)
    if "organic" in attrs:
        price *= 1.25
    name = " ".join(part for part in (brand, words, base, pack) if part)
    return Product(
        id=f"p{index:05d}",
        name=f"{name}, {size:g} {spec.unit}",
        brand=brand,
        category=spec.category,
        department=spec.department,
        attributes=tuple(sorted(attrs)),
        price=round(price, 2),
        size=size,
        unit=spec.unit,
    )
