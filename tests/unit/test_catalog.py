"""Catalog files, the generator and base search."""

from __future__ import annotations

import json

import pytest

from shared.adapters.catalog.files import load_catalog_file, write_catalog_file
from shared.adapters.product_search.bm25s import Bm25sProductSearch
from shared.domain.catalog import Catalog, CatalogError
from shared.domain.catalog_generator import generate_catalog
from shared.domain.search import SearchFilters

GOOD = {"id": "p1", "name": "Oat Milk", "brand": "Oatly", "category": "milk", "department": "dairy", "price": 4.5}


def test_jsonl_catalog_reports_every_bad_row_with_its_line(tmp_path):
    path = tmp_path / "c.jsonl"
    rows = [GOOD, {**GOOD, "id": "p2", "price": -1}, {**GOOD, "id": "p3", "name": ""}, GOOD]
    path.write_text("\n".join(json.dumps(r) for r in rows))
    with pytest.raises(CatalogError) as caught:
        load_catalog_file(path)
    assert [str(e) for e in caught.value.errors] == [
        "line 2: price: Input should be greater than or equal to 0",
        "line 3: name: String should have at least 1 character",
        "line 4: id: duplicate product id 'p1'",
    ]


def test_malformed_json_line_is_named(tmp_path):
    path = tmp_path / "c.jsonl"
    path.write_text(json.dumps(GOOD) + "\n{oops\n")
    with pytest.raises(CatalogError, match="line 2: not valid JSON"):
        load_catalog_file(path)


def test_csv_catalog_with_attribute_lists(tmp_path):
    path = tmp_path / "c.csv"
    path.write_text(
        "id,name,brand,category,department,attributes,price,size,unit\n"
        "p1,Oat Milk,Oatly,Milk,Dairy,Vegan|Plant-Based,4.5,0.5,gal\n"
        "p2,Chips,Lay's,Chips,Snacks,,3,,\n"
        "p3,Bad,Lay's,Chips,Snacks,,not-a-price,,\n"
    )
    with pytest.raises(CatalogError, match="line 4: price"):
        load_catalog_file(path)
    path.write_text("\n".join(path.read_text().splitlines()[:3]))
    products = load_catalog_file(path)
    assert products[0].attributes == ("plant-based", "vegan")
    assert products[1].size is None and products[1].attributes == ()


def test_catalog_round_trips_through_jsonl(tmp_path):
    products = generate_catalog(200)
    write_catalog_file(products, tmp_path / "out.jsonl")
    assert load_catalog_file(tmp_path / "out.jsonl") == products


def test_generator_is_deterministic_and_realistic():
    a, b = generate_catalog(3000), generate_catalog(3000)
    assert a == b and len({p.id for p in a}) == 3000
    assert len({p.department for p in a}) >= 7 and len({p.category for p in a}) >= 20
    attributes = {attr for p in a for attr in p.attributes}
    assert {"organic", "vegan", "gluten-free", "spicy", "local"} <= attributes
    assert generate_catalog(3000, seed=8) != a


CATALOG = Catalog(generate_catalog(3000))


@pytest.fixture(scope="module")
def search():
    return Bm25sProductSearch(CATALOG)


def found(hits) -> list:
    return [CATALOG.products[row] for row in hits.rows]


def test_search_ignores_case_and_plurals(search):
    plain = [p.id for p in found(search.search("yogurt", SearchFilters(), 20))]
    assert plain and plain == [p.id for p in found(search.search("YOGURTS", SearchFilters(), 20))]
    assert "yogurt" in found(search.search("yogurt", SearchFilters(), 1))[0].name.lower()


def test_search_filters(search):
    hits = found(search.search("chips", SearchFilters(attributes=("Spicy",), max_price=4.0), 50))
    assert hits and all("spicy" in p.attributes and p.price <= 4.0 for p in hits)
    hits = found(search.search("milk", SearchFilters(brand="OATLY", category="milk"), 50))
    assert hits and all(p.brand == "Oatly" for p in hits)
    assert len(search.search("milk", SearchFilters(attributes=("no-such-attribute",)), 10)) == 0


def test_search_results_are_sorted_and_limited(search):
    hits = search.search("organic milk", SearchFilters(), 7)
    assert len(hits) == 7
    assert list(hits.relevance) == sorted(hits.relevance, reverse=True)
    assert all(SearchFilters().accepts(p) for p in found(hits))
    assert len(search.search("zzzz qqqq", SearchFilters(), 10)) == 0
    assert len(search.search("the and of", SearchFilters(), 10)) == 0
