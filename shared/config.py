"""Configuration from LEAFLOAF_* environment variables; every default runs on a laptop."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

ROOT = Path(__file__).resolve().parents[1]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LEAFLOAF_", extra="ignore")

    rules_path: Path = ROOT / "personalization_rules.yaml"
    # The store's merchandising rules at start (validated then); rules published through the admin
    # API win once there are any, and instances look for newer ones every merchandising_refresh_s.
    merchandising_rules_path: Path = ROOT / "merchandising_rules.yaml"
    merchandising_refresh_s: float = Field(default=30.0, gt=0)
    # The catalog's versions (shared/services/catalog.py): "sqlite" (a local file) or "objects"
    # (the archive's object store: Cloud Storage in production). Instances look for a newer version
    # every catalog_refresh_s, and build it in the background.
    catalog_store: str = "sqlite"
    catalog_store_path: Path = ROOT / "var" / "catalog.sqlite3"
    catalog_refresh_s: float = Field(default=10.0, gt=0, le=60)
    # Instant suggestions show a store query only when at least this many distinct shoppers searched
    # it (the popular_queries job already keeps only those of 5 or more: this may only raise it).
    suggest_min_shoppers: int = Field(default=5, ge=5)
    # Suggestions index the served catalog version in the background, at most this often (they may
    # lag it by this much; search and rank never do).
    suggest_refresh_s: float = Field(default=30.0, gt=0)
    # A catalog file (.jsonl or .csv) that seeds an empty store at start (older installs kept it here).
    catalog_path: Path = ROOT / "var" / "catalog.jsonl"
    # Local runs only (`./dev run` turns it on): an empty store gets a generated demo catalog. A
    # deployed instance never serves demo products: with no catalog, /health is unhealthy.
    demo_catalog: bool = False
    demo_catalog_size: int = Field(default=5_000, ge=1)
    # Adapters by short name (or a full "module.Class" path); the embedded ones are the default.
    profile_store: str = "sqlite"
    sqlite_path: Path = ROOT / "var" / "profiles.sqlite3"
    # Durable stores sit behind an instance cache with write-behind (see shared/services/profile_cache.py).
    profile_flush_interval_s: float = Field(default=0.25, gt=0)
    profile_max_staleness_s: float = Field(default=0.5, ge=0)
    profile_cache_entries: int = Field(default=100_000, ge=1)
    profile_cache_bytes: int = Field(default=256 * 2**20, ge=1)
    profile_cache_ttl_s: float = Field(default=3600.0, gt=0)
    profile_spool_path: Path = ROOT / "var" / "profile-spool.sqlite3"  # events waiting through an outage
    # Each write-behind compacts the profile: past this encoded size, its weakest facets go (half of
    # Firestore's 1 MiB document limit; 5 years of a heavy shopper's activity take about 300 KB).
    profile_max_stored_bytes: int = Field(default=512 * 2**10, ge=4096)
    # Firestore reads on the request path (one attempt). The read that discovers an outage may
    # take this long; later requests are answered from the cache without waiting.
    profile_read_timeout_s: float = Field(default=0.2, gt=0)
    # Firestore: project and database; FIRESTORE_EMULATOR_HOST (client library) points at an emulator.
    firestore_project: str = "leafloaf-local"
    firestore_database: str = "(default)"
    firestore_collection: str = "profiles"
    product_search: str = "bm25s"
    # How many recent event ids each profile remembers to drop duplicates.
    dedup_window: int = Field(default=32, ge=1, le=1024)
    max_body_bytes: int = Field(default=1_000_000, ge=1_000)
    max_batch_events: int = Field(default=500, ge=1)
    # Comma-separated origins allowed to call the HTTP functions from a browser ("*" for any).
    cors_origins: str = "*"
    log_level: str = "INFO"
    trace_project: str = "leafloaf-local"  # the project named in log lines' trace fields (Cloud Logging)
    metrics_export: str = "none"  # or "gcp": OpenTelemetry metrics to Cloud Monitoring (shared/telemetry.py)
    # /health probes every backend in the background at most this often, each within the timeout.
    health_interval_s: float = Field(default=30.0, gt=0)
    health_timeout_s: float = Field(default=2.0, gt=0)

    # Event pipeline (shared/services/publisher.py, shared/services/pipeline.py).
    event_bus: str = "sqlite"  # or "pubsub" (PUBSUB_EMULATOR_HOST points the client at an emulator)
    bus_path: Path = ROOT / "var" / "event-bus.sqlite3"
    pubsub_project: str = "leafloaf-local"
    publish_batch_events: int = Field(default=100, ge=1, le=1000)
    publish_max_latency_s: float = Field(default=1.0, gt=0)
    publish_retry_interval_s: float = Field(default=5.0, gt=0)
    publish_spool_path: Path = ROOT / "var" / "publish-spool.sqlite3"  # batches waiting for the bus
    # Embedded bus deliveries, as a Pub/Sub subscription's retry and dead-letter policy.
    delivery_max_attempts: int = Field(default=5, ge=1)
    delivery_min_backoff_s: float = Field(default=1.0, ge=0)
    delivery_max_backoff_s: float = Field(default=60.0, ge=0)
    warehouse: str = "duckdb"  # or "bigquery"
    duckdb_path: Path = ROOT / "var" / "warehouse.duckdb"
    duckdb_memory_limit: str = "2GB"  # DuckDB's own memory; it spills to disk beyond it
    warehouse_project: str = "leafloaf-local"
    warehouse_dataset: str = "leafloaf"
    bigquery_endpoint: str | None = None  # e.g. http://127.0.0.1:9050 for the BigQuery emulator
    warehouse_timeout_s: float = Field(default=30.0, gt=0)  # per load; a slower backend is retried later
    # Graph memory: "kuzu" (graphiti-core on an embedded Kuzu database), "falkordb" (graphiti-core on
    # FalkorDB: a child process persisting under falkordb_path, or the server at falkordb_url,
    # e.g. redis://127.0.0.1:6379) or "spanner".
    graph_memory: str = "kuzu"
    kuzu_path: Path = ROOT / "var" / "graph.kuzu"
    falkordb_path: Path = ROOT / "var" / "falkordb"
    falkordb_url: str = ""
    # Free-text memory (reviews, chat notes) needs an LLM: "" (none: refused) or "gemini"
    # (graphiti-core[google-genai], key in GOOGLE_API_KEY, e.g. from Secret Manager).
    graph_llm: str = ""
    graph_llm_model: str | None = None
    spanner_project: str = "leafloaf-local"
    spanner_instance: str = "leafloaf"
    spanner_database: str = "memory"
    archive: str = "local"  # or "gcs" (STORAGE_EMULATOR_HOST points the client at an emulator)
    archive_path: Path = ROOT / "var" / "archive"
    archive_bucket: str = "leafloaf-local-archive"
    archive_flush_events: int = Field(default=100, ge=1)
    archive_flush_interval_s: float = Field(default=60.0, gt=0)
    # Where the object-store catalog (shared/adapters/catalog/objects.py) names its objects in the archive.
    catalog_prefix: str = "catalog/"
    # Learnt features: snapshots published by the scheduled jobs into the archive's object store,
    # cached locally by each serving instance, which checks for a new version every refresh_s.
    features_cache_path: Path = ROOT / "var" / "features"
    features_refresh_s: float = Field(default=60.0, gt=0)
    jobs_chunk_users: int = Field(default=2_000, ge=1)  # shoppers per chunk in the next-basket job
    local_schedule: bool = True  # the local server runs the hourly and daily jobs itself (no Cloud Scheduler)

    # Privacy (shared/services/privacy.py): settings, deletion requests, tombstones, used tokens.
    privacy_store: str = "sqlite"  # or "firestore" (same project and database as the profiles)
    privacy_path: Path = ROOT / "var" / "privacy.sqlite3"
    privacy_collection_prefix: str = "privacy_"  # Firestore: privacy_settings, privacy_deletions, ...
    privacy_cache_ttl_s: float = Field(default=5.0, ge=0)  # how long an instance trusts settings it read
    retention_days: int = Field(default=90, ge=1)  # the store's window for raw events; shoppers may shorten it
    # Deletion requests wait this long before erasure starts, so events already in flight (bus
    # retries, archive staging) are dropped by the tombstone rather than written after the erasure.
    deletion_grace_s: float = Field(default=900.0, ge=0)
    # Who may call user-scoped endpoints: "hmac" (tokens signed with auth_secret), "firebase"
    # (Firebase / Identity Platform ID tokens for project auth_audience), or "off" (every caller
    # is trusted: development and benchmarks only).
    auth: str = "hmac"
    auth_secret: str | None = None  # HMAC key (Secret Manager in production); generated under var/ when unset
    auth_secret_path: Path = ROOT / "var" / "auth-secret"
    auth_audience: str = "leafloaf-local"
    auth_max_token_age_s: int = Field(default=3600, ge=60)
    # Service identities (Google-signed OIDC tokens, or HMAC tokens with role "service") allowed to
    # act on any user's data, e.g. the store's support backend.
    auth_service_accounts: str = ""  # comma-separated emails
    firebase_certs_url: str = "https://www.googleapis.com/robot/v1/metadata/x509/securetoken@system.gserviceaccount.com"
