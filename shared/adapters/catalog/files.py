"""Catalog files: JSON Lines or CSV in, validated products out; JSON Lines out."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from pathlib import Path

from shared.domain.catalog import CatalogError, Product, RowError, parse_products


def _jsonl_rows(path: Path) -> Iterator[tuple[int, dict]]:
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise CatalogError([RowError(number, f"not valid JSON: {exc.msg}")]) from None
            if not isinstance(row, dict):
                raise CatalogError([RowError(number, "a row must be a JSON object")])
            yield number, row


def _csv_rows(path: Path) -> Iterator[tuple[int, dict]]:
    with path.open(encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle)
        for row in reader:
            # Empty cells mean "not given", so optional fields fall back to their defaults.
            yield reader.line_num, {k: v for k, v in row.items() if k and v not in ("", None)}


INSTACART_FILES = ("products.csv", "aisles.csv", "departments.csv")


def _instacart_rows(folder: Path) -> Iterator[tuple[int, dict]]:
    """Instacart's products with their aisle as category and department by name (no brands or prices)."""

    def names(file: str, key: str) -> dict[str, str]:
        with (folder / file).open(encoding="utf-8", newline="") as handle:
            return {row[f"{key}_id"]: row[key] for row in csv.DictReader(handle)}

    aisles, departments = names("aisles.csv", "aisle"), names("departments.csv", "department")
    with (folder / "products.csv").open(encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle)
        for row in reader:
            yield (
                reader.line_num,
                {
                    "id": row.get("product_id"),
                    "name": row.get("product_name"),
                    "category": aisles.get(row.get("aisle_id") or ""),
                    "department": departments.get(row.get("department_id") or ""),
                },
            )


def load_catalog_file(path: str | Path) -> list[Product]:
    """Read a .jsonl/.json or .csv catalog, or a folder of Instacart's products, aisles and
    departments files; raise CatalogError naming every bad row."""
    path = Path(path)
    if path.is_dir():
        missing = [name for name in INSTACART_FILES if not (path / name).is_file()]
        if missing:
            raise FileNotFoundError(f"catalog folder {path} lacks {', '.join(missing)} (need {INSTACART_FILES})")
        return parse_products(_instacart_rows(path))
    if not path.is_file():
        raise FileNotFoundError(f"catalog file not found: {path}")
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".json", ".ndjson"):
        return parse_products(_jsonl_rows(path))
    if suffix == ".csv":
        return parse_products(_csv_rows(path))
    raise ValueError(f"unsupported catalog format {suffix!r}: use .jsonl or .csv")


def write_catalog_file(products: list[Product], path: str | Path) -> None:
    """Write products as JSON Lines, atomically (a reader never sees half a file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(path.suffix + ".partial")
    with partial.open("w", encoding="utf-8") as out:
        for product in products:
            out.write(product.model_dump_json() + "\n")
    partial.replace(path)
