"""The HTTP contract: an OpenAPI 3.1 document built from the same pydantic models the functions
validate requests with, plus models of what they answer. Served at GET /openapi.json by the local
server; tests/functions/test_api_contract.py fuzzes every operation against it (schemathesis)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict
from pydantic.json_schema import models_json_schema

from functions.jobs import JobRequest
from functions.memory import Note
from functions.privacy import QueueRequest
from shared.domain.catalog import CatalogDelete, CatalogPatch, CatalogUpsert, Product
from shared.domain.events import Interaction, WeatherCondition
from shared.domain.memory import UsualItem  # answered as is (dataclasses.asdict)
from shared.domain.merchandising import MerchandisingRules
from shared.domain.orders import Order
from shared.domain.privacy import PrivacyFeatures, PrivacyUpdate
from shared.domain.recommendations import RecommendationRequest, RecommendationSurface
from shared.domain.search import RankRequest, SearchRequest
from shared.domain.suggest import MAX_QUERY, Kind


class _Answer(BaseModel):
    model_config = ConfigDict(extra="forbid")


class FieldError(_Answer):
    field: str
    message: str


class ErrorBody(_Answer):
    code: str
    message: str
    fields: list[FieldError]


class ErrorResponse(_Answer):
    error: ErrorBody


class EventBatchBody(_Answer):
    events: list[Interaction]


class Refusal(_Answer):
    event_id: str
    reason: Literal[
        "unauthenticated", "user_deleted", "personalization_disabled", "search_history_disabled",
        "purchase_history_disabled",
    ]  # fmt: skip


class TrackResult(_Answer):
    accepted: list[str]
    duplicates: list[str]
    refused: list[Refusal]


class Reason(_Answer):
    facet: str
    value: str
    contribution: float


class SearchResult(_Answer):
    product_id: str
    name: str
    brand: str | None  # a catalog may have no brand or price for a product
    category: str
    department: str
    attributes: list[str]
    price: float | None
    size: float | None
    unit: str | None
    in_stock: bool  # false only when the request asked for out-of-stock products too
    rank: int
    position: int  # 0-based place in this answer: track a click on it with context.position and .search_id
    base_rank: int
    moved: int
    relevance: float
    score: float
    badges: list[str]
    reasons: list[Reason]
    confidence: float
    suggested_quantity: int
    rule: str | None = None  # the merchandising rule that moved it (pin, promotion, boost or bury)
    promoted: bool = False  # a promoted (sponsored) slot: its badge says "Promoted" or "Sponsored"


class Personalization(_Answer):
    applied: bool
    reason: Literal["anonymous", "opted_out", "off", "no_profile", "no_results", "over_budget", "error"] | None
    budget_ms: float
    learned: bool
    ranking: Literal["learnt", "rules"] | None  # a learnt model's ranking, or the rules'
    model: str | None  # the learnt model's version


class Context(_Answer):
    """The shopper's moment the answer was ranked for (their local_time, else now in the store's time zone)."""

    weekday: Literal["sunday", "monday", "tuesday", "wednesday", "thursday", "friday", "saturday"]
    daypart: Literal["morning", "midday", "afternoon", "evening", "night"]
    meal: Literal["breakfast", "lunch", "snack", "dinner"]
    season: Literal["winter", "spring", "summer", "autumn"] | None
    weather: WeatherCondition | None
    applied: bool  # whether learnt lifts for this moment moved the scores (badges may name them either way)


class Timing(_Answer):
    base_search: float
    rerank: float
    compile: float
    total: float


class SearchResponse(_Answer):
    query: str
    search_id: str  # this answer's id: events tracked with context.search_id are attributed to it
    results: list[SearchResult]
    personalization: Personalization
    context: Context
    timing_ms: Timing


class RankResponse(_Answer):
    results: list[SearchResult]  # every item the filters accept, re-ordered for the shopper
    personalization: Personalization
    context: Context
    timing_ms: Timing  # base_search: reading the store's items
    filtered_out: list[str]  # the items left out: out of stock (unless filters.include_out_of_stock), or filtered


class Fallback(_Answer):
    to: Literal["popular"]
    reason: Literal["no_features", "no_candidates"]  # nothing known for this surface yet, or nothing left after filters


class RecommendationResponse(_Answer):
    surface: RecommendationSurface
    fallback: Fallback | None  # set when the store's popular products were served instead of the surface's own
    results: list[SearchResult]  # badges[0] says why the surface proposed each one
    personalization: Personalization
    context: Context
    timing_ms: Timing  # base_search: gathering the surface's candidates


class Suggestion(_Answer):
    text: str
    kind: Kind  # a store query, a category, a brand or a product's name
    product_id: str | None  # for a product's name
    personal: bool  # the shopper's own past query, product, brand or category


class SuggestTiming(_Answer):
    total: float


class SuggestResponse(_Answer):
    q: str
    suggestions: list[Suggestion]
    corrected: str | None  # what was matched when the typed word was taken as a typo
    personalized: bool
    timing_ms: SuggestTiming


class CatalogWrite(_Answer):
    version: int  # the catalog version this change made
    upserted: int
    patched: int
    deleted: int
    serving: int  # the version this instance served when answering; it serves `version` within a second


class ServedProduct(_Answer):
    version: int  # the catalog version served
    product: Product


class ConfirmedItem(_Answer):
    product_id: str
    quantity: int
    purchase_kind: Literal["first_time", "repeat", "bulk_purchase", "subscription"] | None
    refused: str | None = None


class OrderConfirmation(_Answer):
    order_id: str
    status: Literal["confirmed", "already_confirmed", "not_recorded"]
    items: list[ConfirmedItem]


class PriceSensitivity(_Answer):
    preference: float | None
    label: Literal["budget", "neutral", "premium", "unknown", "not_tracked"]


class PurchaseMemory(_Answer):
    count: float  # purchases, decaying 0.99 a day (a return takes one back)
    days_since: float  # since the latest purchase or return


class LivePreferences(_Answer):
    user_id: str
    known: bool
    used: bool  # false while the shopper has personalization off
    as_of: str
    categories: dict[str, float]
    brands: dict[str, float]
    products: dict[str, float]
    attributes: dict[str, float]
    price_sensitivity: PriceSensitivity
    preferred_quantities: dict[str, int]
    purchase_memory: dict[str, PurchaseMemory] = {}  # facet key ("product:p1") -> the ranking's purchase memory


class MemoryFact(_Answer):
    fact: str
    name: str
    attributes: dict[str, Any]
    valid_at: str
    invalid_at: str | None


class ShopperMemory(_Answer):
    user_id: str
    at: str
    usual: list[UsualItem]
    due_for_reorder: list[UsualItem]
    facts: list[MemoryFact]


class NoteAccepted(_Answer):
    user_id: str
    status: Literal["remembered"]


class Health(_Answer):
    status: Literal["healthy", "degraded", "unhealthy"]  # unhealthy (503): no catalog to serve
    backends: dict[str, dict[str, Any]]


class JobRun(_Answer):
    job: str
    status: Literal["done", "skipped"]
    rows: int | None = None
    seconds: float | None = None
    reason: str | None = None


class JobSummary(_Answer):
    schedule: Literal["hourly", "daily"]
    window_end: str
    jobs: list[JobRun]
    features: dict[str, Any] | None = None
    seconds: float


class PrivacyAnswer(_Answer):
    user_id: str
    personalization_enabled: bool
    features: PrivacyFeatures
    data_retention_days: int


class DeletionStatus(_Answer):
    request_id: str
    requested_at: str
    due_by: str
    status: Literal["pending", "complete"]
    steps: dict[str, str]
    attempts: int
    last_error: str | None
    completed_at: str | None
    remaining: list[str]
    status_url: str


class ExportSection(_Answer):
    used_for: str
    data: Any


class DataExport(_Answer):
    user_id: str
    exported_at: str
    data: dict[str, ExportSection]


class ServedMerchandising(_Answer):
    version: str  # "file": the rules file's, until rules are published through the admin API
    rules: MerchandisingRules


class QueueRun(_Answer):
    deletions: dict[str, Any]
    retention: dict[str, Any]


ID = {"type": "string", "pattern": r"^[A-Za-z0-9_.:@-]{1,128}$"}
USER = {"name": "user_id", "in": "path", "required": True, "schema": ID}
ERRORS = (400, 401, 403, 404, 405, 409, 500, 501, 503)
SUGGEST_PARAMS = (
    {
        "name": "q",
        "in": "query",
        "required": True,
        "schema": {"type": "string", "minLength": 1, "maxLength": MAX_QUERY},
    },
    {"name": "user_id", "in": "query", "required": False, "schema": ID},
    {"name": "limit", "in": "query", "required": False, "schema": {"type": "integer", "minimum": 1, "maximum": 20}},
)
# A signed token proving the shopper (or a service identity, which the scheduled functions need);
# tracking and search without one are anonymous.
BEARER = {"bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}}


def _operation(
    summary: str,
    target: str,
    answer: tuple[int, type[BaseModel]],
    body: Any = None,
    params: tuple = (),
    body_required: bool = True,
) -> dict[str, Any]:
    status, model = answer
    responses: dict[str, Any] = {str(status): {"description": "OK", "content": _json(_ref(model))}}
    for code in ERRORS:
        responses[str(code)] = {"description": "error", "content": _json(_ref(ErrorResponse))}
    operation: dict[str, Any] = {
        "summary": summary,
        "operationId": target,
        "responses": responses,
        "security": [{"bearer": []}, {}],
    }
    if body is not None:
        operation["requestBody"] = {"required": body_required, "content": _json(body)}
    if params:
        operation["parameters"] = list(params)
    return operation


def _health_operation() -> dict[str, Any]:
    """/health answers its own document with 503 too: an instance with no catalog to serve."""
    operation = _operation("Backends' state", "check_health", (200, Health))
    operation["responses"]["503"] = {"description": "unhealthy", "content": _json(_ref(Health))}
    return operation


def _ref(model: type[BaseModel]) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{model.__name__}"}


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


MODELS: tuple[type[BaseModel], ...] = (
    Interaction, EventBatchBody, SearchRequest, Order, Note, JobRequest, ErrorResponse, TrackResult,
    SearchResponse, OrderConfirmation, LivePreferences, ShopperMemory, NoteAccepted, Health, JobSummary,
    PrivacyUpdate, QueueRequest, PrivacyAnswer, DeletionStatus, DataExport, QueueRun, RankRequest, RankResponse,
    RecommendationRequest, RecommendationResponse, SuggestResponse, MerchandisingRules, ServedMerchandising,
    CatalogUpsert, CatalogPatch, CatalogDelete, CatalogWrite, ServedProduct,
)  # fmt: skip


def openapi() -> dict[str, Any]:
    """The OpenAPI document of every HTTP function, at the local server's paths."""
    requests = (
        Interaction, SearchRequest, Order, Note, JobRequest, PrivacyUpdate, QueueRequest, RankRequest,
        RecommendationRequest, MerchandisingRules, CatalogUpsert, CatalogPatch, CatalogDelete,
    )  # fmt: skip
    _, definitions = models_json_schema(
        [(m, "validation" if m in requests else "serialization") for m in MODELS],
        ref_template="#/components/schemas/{model}",
    )
    track_body = {"oneOf": [_ref(Interaction), _ref(EventBatchBody), {"type": "array", "items": _ref(Interaction)}]}
    at = {"name": "at", "in": "query", "required": False, "schema": {"type": "string", "format": "date-time"}}
    paths = {
        "/api/interactions/track": {
            "post": _operation("Track one event or a batch", "track_interaction", (202, TrackResult), track_body)
        },
        "/api/search/personalized": {
            "post": _operation("Personalized search", "search_personalized", (200, SearchResponse), _ref(SearchRequest))
        },
        "/api/rank": {
            "post": _operation(
                "Re-order the store's own results for the shopper",
                "rank_personalized",
                (200, RankResponse),
                _ref(RankRequest),
            )
        },
        "/api/recommendations": {
            "post": _operation(
                "Recommendations without a query, for a surface",
                "recommend_products",
                (200, RecommendationResponse),
                _ref(RecommendationRequest),
            )
        },
        "/api/suggest": {
            "get": _operation(
                "Instant query suggestions, the shopper's own first",
                "suggest_queries",
                (200, SuggestResponse),
                params=SUGGEST_PARAMS,
            )
        },
        "/api/orders/confirm": {
            "post": _operation("Confirm an order", "confirm_order", (200, OrderConfirmation), _ref(Order))
        },
        "/api/users/{user_id}/preferences/live": {
            "get": _operation("The live profile", "get_live_preferences", (200, LivePreferences), params=(USER,))
        },
        "/api/users/{user_id}/memory": {
            "get": _operation("Graph memory", "get_shopper_memory", (200, ShopperMemory), params=(USER, at))
        },
        "/api/users/{user_id}/memory/notes": {
            "post": _operation("A free-text note", "add_memory_note", (202, NoteAccepted), _ref(Note), (USER,))
        },
        "/api/users/{user_id}/privacy": {
            "get": _operation("Privacy settings", "manage_privacy", (200, PrivacyAnswer), params=(USER,)),
            "put": _operation(
                "Change privacy settings (the fields given)",
                "manage_privacy",
                (200, PrivacyAnswer),
                _ref(PrivacyUpdate),
                (USER,),
            ),
        },
        "/api/users/{user_id}/data": {
            "get": _operation(
                "Everything held about the shopper", "export_user_data", (200, DataExport), params=(USER,)
            )
        },
        "/api/users/{user_id}": {
            "delete": _operation("Delete the shopper's data", "delete_user_data", (202, DeletionStatus), params=(USER,))
        },
        "/api/deletions/{request_id}": {
            "get": _operation(
                "A deletion's progress",
                "get_deletion_status",
                (200, DeletionStatus),
                params=({"name": "request_id", "in": "path", "required": True, "schema": ID},),
            )
        },
        "/jobs/deletions": {
            "post": _operation(
                "Run the deletion queue and retention (a service identity's token)",
                "process_deletion_queue",
                (200, QueueRun),
                _ref(QueueRequest),
                body_required=False,
            )
        },
        "/api/merchandising/rules": {
            "get": _operation(
                "The served merchandising rules (a service identity's token)",
                "manage_merchandising_rules",
                (200, ServedMerchandising),
            ),
            "put": _operation(
                "Replace the merchandising rules (a service identity's token)",
                "manage_merchandising_rules",
                (200, ServedMerchandising),
                _ref(MerchandisingRules),
            ),
        },
        "/api/merchandising/rules/{rule_id}": {
            "delete": _operation(
                "Remove one merchandising rule (a service identity's token)",
                "manage_merchandising_rules",
                (200, ServedMerchandising),
                params=({"name": "rule_id", "in": "path", "required": True, "schema": ID},),
            )
        },
        "/api/catalog/products": {
            "put": _operation(
                "Add or replace up to 1,000 products, as one new catalog version (a service identity's token)",
                "manage_catalog",
                (200, CatalogWrite),
                _ref(CatalogUpsert),
            ),
            "patch": _operation(
                "Change some fields of up to 1,000 products, as one new catalog version (a service identity's token)",
                "manage_catalog",
                (200, CatalogWrite),
                _ref(CatalogPatch),
            ),
            "delete": _operation(
                "Remove up to 1,000 products, as one new catalog version (a service identity's token)",
                "manage_catalog",
                (200, CatalogWrite),
                _ref(CatalogDelete),
            ),
        },
        "/api/catalog/products/{product_id}": {
            "get": _operation(
                "A product as this instance serves it (a service identity's token)",
                "manage_catalog",
                (200, ServedProduct),
                params=({"name": "product_id", "in": "path", "required": True, "schema": ID},),
            ),
            "delete": _operation(
                "Remove one product, as a new catalog version (a service identity's token)",
                "manage_catalog",
                (200, CatalogWrite),
                params=({"name": "product_id", "in": "path", "required": True, "schema": ID},),
            ),
        },
        "/health": {"get": _health_operation()},
        "/jobs/hourly": {
            "post": _operation(
                "Run the hourly jobs (a service identity's token)",
                "run_hourly_jobs",
                (200, JobSummary),
                _ref(JobRequest),
                body_required=False,
            )
        },
        "/jobs/daily": {
            "post": _operation(
                "Run the daily jobs (a service identity's token)",
                "run_daily_jobs",
                (200, JobSummary),
                _ref(JobRequest),
                body_required=False,
            )
        },
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": "LeafLoaf Personalize", "version": "1"},
        "paths": paths,
        "components": {"schemas": definitions["$defs"], "securitySchemes": BEARER},
    }
