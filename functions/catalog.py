"""HTTP, the catalog's admin API (private; a service identity's token):

- PUT    /api/catalog/products        {"products": [...]}: add or replace up to 1,000 products whole;
- PATCH  /api/catalog/products        {"products": [{"id", <fields to change>}]}: partial updates
  (price, in_stock, attributes, ...) of up to 1,000 products the catalog holds;
- DELETE /api/catalog/products        {"ids": [...]} (up to 1,000), or /api/catalog/products/{id};
- GET    /api/catalog/products/{id}:  the product as this instance serves it.

Each write is one new catalog version, applied whole or not at all: the answer names it, this
instance serves it within a second, and every other instance within LEAFLOAF_CATALOG_REFRESH_S.
"""

from __future__ import annotations

from typing import TypeVar

import flask
import functions_framework

from functions.http import RequestError, endpoint, json_body, service_only, validate
from shared.bootstrap import container
from shared.domain.catalog import (
    CatalogChange,
    CatalogDelete,
    CatalogError,
    CatalogPatch,
    CatalogUpsert,
    ProductPatch,
    StrictProduct,
)
from shared.pacing import quick_switches
from shared.ports.catalog_store import CatalogUnavailable

PATH = "/api/catalog/products"
T = TypeVar("T", StrictProduct, ProductPatch)


@functions_framework.http
@endpoint("GET", "PUT", "PATCH", "DELETE")
def manage_catalog(request: flask.Request) -> tuple[int, dict]:
    service_only(request, "change the catalog")
    product_id = _product_id(request)
    if request.method == "GET" and product_id is not None:
        catalog = container().catalog
        product = catalog.get(product_id)
        if product is None:
            raise RequestError(
                "not_found", f"no product {product_id!r} in catalog version {catalog.version}", status=404
            )
        return 200, {"version": catalog.version, "product": product.model_dump(mode="json")}
    if product_id is None and request.method in ("PUT", "PATCH", "DELETE"):
        with quick_switches():  # validating 1,000 products: searches it overlaps take their turns at once
            return 200, _commit(request)
    if request.method == "DELETE":
        return 200, _commit_change(CatalogChange(deletes=(product_id,)))  # type: ignore[arg-type]
    allow = "PUT, PATCH, DELETE" if product_id is None else "GET, DELETE"
    raise RequestError("method_not_allowed", f"use {allow} here", status=405, headers={"Allow": allow})


def _commit(request: flask.Request) -> dict:
    body = json_body(request)
    if request.method == "PUT":
        change = CatalogChange(upserts=tuple(_distinct(validate(CatalogUpsert, body).products)))
    elif request.method == "PATCH":
        change = CatalogChange(patches=tuple(_distinct(validate(CatalogPatch, body).products)))
    else:
        change = CatalogChange(deletes=validate(CatalogDelete, body).ids)
    return _commit_change(change)


def _commit_change(change: CatalogChange) -> dict:
    live = container().live
    try:
        version = live.commit(change)
    except CatalogError as exc:  # a patch of a product the catalog does not hold: nothing changed
        fields = [{"field": f"products.{e.line - 1}.id", "message": e.message.removeprefix("id: ")} for e in exc.errors]
        raise RequestError("invalid_request", "the change does not apply to the catalog", fields) from None
    except CatalogUnavailable as exc:
        raise RequestError("unavailable", f"the catalog store failed; nothing changed: {exc}", status=503) from None
    return {
        "version": version,
        "upserted": len(change.upserts),
        "patched": len(change.patches),
        "deleted": len(change.deletes),
        "serving": live.catalog.version,  # this instance serves `version` within a second
    }


def _distinct(items: tuple[T, ...]) -> tuple[T, ...]:
    """The items, refusing a product given twice (which one wins would be arbitrary)."""
    seen: set[str] = set()
    for i, item in enumerate(items):
        if item.id in seen:
            raise RequestError(
                "invalid_request",
                "the request does not match the schema",
                [{"field": f"products.{i}.id", "message": f"duplicate product id {item.id!r}"}],
            )
        seen.add(item.id)
    return items


def _product_id(request: flask.Request) -> str | None:
    """The product id after the path (or after `/` alone, as functions-framework serves a function at /)."""
    path = request.path.rstrip("/")
    tail = path[len(PATH) :] if path.startswith(PATH) else path
    return tail.strip("/") or None
