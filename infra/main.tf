# LeafLoaf Personalize on Google Cloud. What to deploy (functions, tables, topics, DDL) comes from
# deployment.auto.tfvars.json, generated from the code; this file says how.

locals {
  http_functions     = { for name, f in var.functions : name => f if f.trigger == "http" }
  pubsub_functions   = { for name, f in var.functions : name => f if f.trigger == "pubsub" }
  schedule_functions = { for name, f in var.functions : name => f if f.trigger == "schedule" }
  public_functions   = { for name, f in var.functions : name => f if f.public }

  # Least privilege: what each function's own service account may do, beyond running.
  # The deletion queue erases from every store; the export reads from every store.
  bigquery_writers = toset(["load_events_bigquery", "run_hourly_jobs", "run_daily_jobs", "process_deletion_queue"])
  bigquery_readers = toset(["export_user_data"])
  archive_writers = toset([
    "archive_events", "run_hourly_jobs", "run_daily_jobs", "process_deletion_queue",
    "manage_merchandising_rules", # publishes the rules to the archive's object store
    "manage_catalog",             # writes the catalog's versions there
  ])
  # Every function reads the catalog's versions (and the search functions the features snapshot);
  # the writers above may read already.
  archive_readers = setsubtract(toset(keys(var.functions)), local.archive_writers)
  spanner_users = toset([
    "ingest_graph_memory", "get_shopper_memory", "add_memory_note", "process_deletion_queue", "export_user_data",
  ])
  # Firestore holds the profiles and the privacy records (settings, deletion requests, tombstones,
  # used tokens): the event functions and the jobs read tombstones to leave deleted shoppers out.
  firestore_users = toset([
    "track_interaction", "search_personalized", "rank_personalized", "recommend_products", "suggest_queries",
    "confirm_order",
    "get_live_preferences", "get_shopper_memory", "add_memory_note", "manage_privacy", "export_user_data",
    "delete_user_data", "get_deletion_status", "process_deletion_queue", "load_events_bigquery", "archive_events",
    "ingest_graph_memory", "run_hourly_jobs", "run_daily_jobs",
  ])
  event_publishers = toset(["track_interaction", "search_personalized", "confirm_order"])
  llm_users        = toset(["add_memory_note"])

  environment = {
    LEAFLOAF_PROFILE_STORE       = "firestore"
    LEAFLOAF_FIRESTORE_PROJECT   = var.project
    LEAFLOAF_EVENT_BUS           = "pubsub"
    LEAFLOAF_PUBSUB_PROJECT      = var.project
    LEAFLOAF_WAREHOUSE           = "bigquery"
    LEAFLOAF_WAREHOUSE_PROJECT   = var.project
    LEAFLOAF_WAREHOUSE_DATASET   = var.dataset
    LEAFLOAF_ARCHIVE             = "gcs"
    LEAFLOAF_CATALOG_STORE       = "objects" # the catalog's versions in the archive bucket (docs/CATALOG.md)
    LEAFLOAF_ARCHIVE_BUCKET      = google_storage_bucket.archive.name
    LEAFLOAF_GRAPH_MEMORY        = "spanner"
    LEAFLOAF_SPANNER_PROJECT     = var.project
    LEAFLOAF_SPANNER_INSTANCE    = google_spanner_instance.memory.name
    LEAFLOAF_SPANNER_DATABASE    = google_spanner_database.memory.name
    LEAFLOAF_CORS_ORIGINS        = var.cors_origins
    LEAFLOAF_LOCAL_SCHEDULE      = "false"
    LEAFLOAF_PRIVACY_STORE       = "firestore"
    LEAFLOAF_AUTH                = "firebase" # shoppers' Firebase / Identity Platform ID tokens
    LEAFLOAF_AUTH_AUDIENCE       = var.project
    LEAFLOAF_AUTH_SERVICE_ACCOUNTS = join(",", var.support_service_accounts)
    LEAFLOAF_RETENTION_DAYS      = tostring(var.raw_event_retention_days)
    LEAFLOAF_METRICS_EXPORT      = "gcp" # OpenTelemetry metrics to Cloud Monitoring (workload.googleapis.com/leafloaf.*)
    LEAFLOAF_TRACE_PROJECT       = var.project
    LEAFLOAF_PROFILE_SPOOL_PATH  = "/tmp/profile-spool.sqlite3"
    LEAFLOAF_PUBLISH_SPOOL_PATH  = "/tmp/publish-spool.sqlite3"
    LEAFLOAF_FEATURES_CACHE_PATH = "/tmp/features"
  }
}

data "google_project" "this" {}

resource "google_project_service" "apis" {
  for_each = toset([
    "artifactregistry.googleapis.com", "bigquery.googleapis.com", "cloudbuild.googleapis.com",
    "cloudfunctions.googleapis.com", "cloudscheduler.googleapis.com", "eventarc.googleapis.com",
    "firestore.googleapis.com", "logging.googleapis.com", "monitoring.googleapis.com", "pubsub.googleapis.com",
    "run.googleapis.com",
    "secretmanager.googleapis.com", "spanner.googleapis.com", "storage.googleapis.com",
  ])
  service            = each.value
  disable_on_destroy = false
}

# -- source: one archive of the repository, named by its hash so a code change redeploys ----------
data "archive_file" "source" {
  type        = "zip"
  source_dir  = "${path.module}/.."
  output_path = "${path.module}/.build/source.zip"
  excludes = [
    ".git", ".venv", ".venv-bqemulator", ".venv-checkov", "var", "tests", "bench", "docs", "infra",
    ".ci", ".pytest_cache", ".ruff_cache", ".mypy_cache", ".hypothesis",
    "shared/emulators", # local emulators for tests and ./dev run --emulators: no deployed code imports them
  ]
}

resource "google_storage_bucket" "source" {
  name                        = "${var.project}-leafloaf-source"
  location                    = var.region
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  versioning {
    enabled = true
  }
  lifecycle_rule {
    condition {
      age = 30
    }
    action {
      type = "Delete"
    }
  }
}

resource "google_storage_bucket_object" "source" {
  name   = "source-${data.archive_file.source.output_md5}.zip"
  bucket = google_storage_bucket.source.name
  source = data.archive_file.source.output_path
}

# -- event archive (JSONL) and features snapshots -------------------------------------------------
resource "google_storage_bucket" "archive" {
  name                        = "${var.project}-leafloaf-archive"
  location                    = var.region
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  versioning {
    enabled = true # objects are rewritten only by deletion requests; old versions age out below
  }
  lifecycle_rule { # raw events past the retention window
    condition {
      age            = var.raw_event_retention_days
      matches_prefix = ["events/"]
    }
    action {
      type = "Delete"
    }
  }
  lifecycle_rule { # markers of flushed batches: only needed while redeliveries can arrive
    condition {
      age            = 7
      matches_prefix = ["flushed/"]
    }
    action {
      type = "Delete"
    }
  }
  lifecycle_rule { # superseded object versions (rewritten archives, old snapshots): the 72-hour promise
    condition {
      days_since_noncurrent_time = 1
      with_state                 = "ARCHIVED"
    }
    action {
      type = "Delete"
    }
  }
}

# -- Pub/Sub: the events topic, its dead letters, one push subscription per event function ---------
resource "google_pubsub_topic" "events" {
  name       = var.events_topic
  depends_on = [google_project_service.apis]
}

resource "google_pubsub_topic" "dead_letter" {
  name       = var.dead_letter_topic
  depends_on = [google_project_service.apis]
}

resource "google_pubsub_subscription" "dead_letter" { # keeps dead letters for inspection (7 days)
  name                       = "${var.dead_letter_topic}-inspect"
  topic                      = google_pubsub_topic.dead_letter.id
  message_retention_duration = "604800s"
}

resource "google_service_account" "pusher" {
  account_id   = "leafloaf-pubsub-push"
  display_name = "Pub/Sub push to the LeafLoaf event functions"
}

# The event functions are CloudEvent functions behind an HTTPS URL; a push subscription delivers
# each message with the topic in the path, which functions-framework turns into the CloudEvent
# Eventarc would send (as the local server does). Unlike an Eventarc trigger, the subscription
# carries the retry and dead-letter policy the pipeline relies on.
resource "google_pubsub_subscription" "push" {
  for_each                   = local.pubsub_functions
  name                       = "${var.events_topic}-${replace(each.key, "_", "-")}"
  topic                      = google_pubsub_topic.events.id
  ack_deadline_seconds       = 60
  message_retention_duration = "604800s"
  push_config {
    push_endpoint = "${google_cloudfunctions2_function.function[each.key].service_config[0].uri}/projects/${var.project}/topics/${var.events_topic}"
    oidc_token {
      service_account_email = google_service_account.pusher.email
    }
  }
  retry_policy {
    minimum_backoff = "1s"
    maximum_backoff = "60s"
  }
  dead_letter_policy {
    dead_letter_topic     = google_pubsub_topic.dead_letter.id
    max_delivery_attempts = 5
  }
}

# Pub/Sub's own agent forwards dead letters and acknowledges the originals.
resource "google_pubsub_topic_iam_member" "dead_letter_publisher" {
  topic  = google_pubsub_topic.dead_letter.id
  role   = "roles/pubsub.publisher"
  member = "serviceAccount:service-${data.google_project.this.number}@gcp-sa-pubsub.iam.gserviceaccount.com"
}

resource "google_pubsub_subscription_iam_member" "dead_letter_subscriber" {
  for_each     = google_pubsub_subscription.push
  subscription = each.value.id
  role         = "roles/pubsub.subscriber"
  member       = "serviceAccount:service-${data.google_project.this.number}@gcp-sa-pubsub.iam.gserviceaccount.com"
}

# -- BigQuery: the event tables, partitioned by day (expiring with retention) and clustered --------
resource "google_bigquery_dataset" "warehouse" {
  dataset_id = var.dataset
  location   = var.region
  # Deleted rows stay readable through time travel this long (the minimum): an erasure is final
  # within 2 days of the deletion queue's run, inside the 72-hour promise.
  max_time_travel_hours = "48"
  depends_on = [google_project_service.apis]
}

resource "google_bigquery_table" "events" {
  for_each            = var.bigquery_tables
  dataset_id          = google_bigquery_dataset.warehouse.dataset_id
  table_id            = each.key
  description         = each.value.description
  schema              = each.value.schema
  clustering          = each.value.clustering
  deletion_protection = true
  time_partitioning {
    type          = "DAY"
    field         = each.value.partition_field
    expiration_ms = var.raw_event_retention_days * 86400000
  }
}

# -- Firestore (profiles) and Spanner (graph memory) -----------------------------------------------
resource "google_firestore_database" "profiles" {
  name        = "(default)"
  location_id = var.region
  type        = "FIRESTORE_NATIVE"
  depends_on  = [google_project_service.apis]
}

resource "google_spanner_instance" "memory" {
  name             = "leafloaf"
  config           = "regional-${var.region}"
  display_name     = "LeafLoaf graph memory"
  processing_units = var.spanner_processing_units
  depends_on       = [google_project_service.apis]
}

resource "google_spanner_database" "memory" {
  instance                 = google_spanner_instance.memory.name
  name                     = "memory"
  ddl                      = var.spanner_ddl
  deletion_protection      = true
  enable_drop_protection   = true
  version_retention_period = "7d" # point-in-time recovery of the graph
}

# -- secrets (values are added outside Terraform: gcloud secrets versions add) ----------------------
resource "google_secret_manager_secret" "gemini_api_key" {
  secret_id = "leafloaf-gemini-api-key"
  replication {
    auto {}
  }
  depends_on = [google_project_service.apis]
}

# -- functions: one service account each, least privilege ------------------------------------------
resource "google_service_account" "function" {
  for_each     = var.functions
  account_id   = "ll-${substr(replace(each.key, "_", "-"), 0, 25)}"
  display_name = "LeafLoaf ${each.key}"
}

resource "google_cloudfunctions2_function" "function" {
  for_each = var.functions
  name     = replace(each.key, "_", "-")
  location = var.region

  build_config {
    runtime     = "python311"
    entry_point = each.key
    source {
      storage_source {
        bucket = google_storage_bucket.source.name
        object = google_storage_bucket_object.source.name
      }
    }
  }

  service_config {
    available_memory                 = each.value.memory
    timeout_seconds                  = each.value.timeout_s
    max_instance_count               = each.value.trigger == "schedule" ? 1 : 100
    service_account_email            = google_service_account.function[each.key].email
    # Browsers reach the public ones; Pub/Sub pushes and Cloud Scheduler count as internal traffic.
    ingress_settings                 = each.value.public ? "ALLOW_ALL" : "ALLOW_INTERNAL_ONLY"
    all_traffic_on_latest_revision   = true
    environment_variables            = local.environment
    max_instance_request_concurrency = each.value.trigger == "http" ? 8 : 1

    dynamic "secret_environment_variables" {
      for_each = contains(local.llm_users, each.key) ? [1] : []
      content {
        key        = "GOOGLE_API_KEY"
        project_id = var.project
        secret     = google_secret_manager_secret.gemini_api_key.secret_id
        version    = "latest"
      }
    }
  }

  depends_on = [google_project_service.apis]
}

# Public: only what a browser must call. Everything else needs an identity with run.invoker.
resource "google_cloud_run_service_iam_member" "public" {
  for_each = local.public_functions
  location = var.region
  service  = google_cloudfunctions2_function.function[each.key].name
  role     = "roles/run.invoker"
  member   = "allUsers"
}

resource "google_cloud_run_service_iam_member" "pusher" {
  for_each = local.pubsub_functions
  location = var.region
  service  = google_cloudfunctions2_function.function[each.key].name
  role     = "roles/run.invoker"
  member   = "serviceAccount:${google_service_account.pusher.email}"
}

resource "google_service_account" "scheduler" {
  account_id   = "leafloaf-scheduler"
  display_name = "Cloud Scheduler calling the LeafLoaf jobs"
}

resource "google_cloud_run_service_iam_member" "scheduler" {
  for_each = local.schedule_functions
  location = var.region
  service  = google_cloudfunctions2_function.function[each.key].name
  role     = "roles/run.invoker"
  member   = "serviceAccount:${google_service_account.scheduler.email}"
}

resource "google_cloud_scheduler_job" "jobs" {
  for_each         = local.schedule_functions
  name             = replace(each.key, "_", "-")
  region           = var.region
  schedule         = each.value.schedule
  time_zone        = "Etc/UTC"
  attempt_deadline = "1800s"
  retry_config {
    retry_count          = 3 # a failed run resumes where it stopped (job_runs)
    min_backoff_duration = "60s"
  }
  http_target {
    http_method = "POST"
    uri         = google_cloudfunctions2_function.function[each.key].service_config[0].uri
    oidc_token {
      service_account_email = google_service_account.scheduler.email
      audience              = google_cloudfunctions2_function.function[each.key].service_config[0].uri
    }
  }
}

# -- the functions' own permissions ----------------------------------------------------------------
resource "google_project_iam_member" "bigquery_jobs" {
  for_each = setunion(local.bigquery_writers, local.bigquery_readers)
  project  = var.project
  role     = "roles/bigquery.jobUser"
  member   = "serviceAccount:${google_service_account.function[each.key].email}"
}

resource "google_bigquery_dataset_iam_member" "bigquery_writers" {
  for_each   = local.bigquery_writers
  dataset_id = google_bigquery_dataset.warehouse.dataset_id
  role       = "roles/bigquery.dataEditor"
  member     = "serviceAccount:${google_service_account.function[each.key].email}"
}

resource "google_bigquery_dataset_iam_member" "bigquery_readers" {
  for_each   = local.bigquery_readers
  dataset_id = google_bigquery_dataset.warehouse.dataset_id
  role       = "roles/bigquery.dataViewer"
  member     = "serviceAccount:${google_service_account.function[each.key].email}"
}

resource "google_storage_bucket_iam_member" "archive_writers" {
  for_each = local.archive_writers
  bucket   = google_storage_bucket.archive.name
  role     = "roles/storage.objectUser"
  member   = "serviceAccount:${google_service_account.function[each.key].email}"
}

resource "google_storage_bucket_iam_member" "archive_readers" {
  for_each = local.archive_readers
  bucket   = google_storage_bucket.archive.name
  role     = "roles/storage.objectViewer"
  member   = "serviceAccount:${google_service_account.function[each.key].email}"
}

resource "google_spanner_database_iam_member" "spanner_users" {
  for_each = local.spanner_users
  instance = google_spanner_instance.memory.name
  database = google_spanner_database.memory.name
  role     = "roles/spanner.databaseUser"
  member   = "serviceAccount:${google_service_account.function[each.key].email}"
}

resource "google_project_iam_member" "firestore_users" {
  for_each = local.firestore_users
  project  = var.project
  role     = "roles/datastore.user"
  member   = "serviceAccount:${google_service_account.function[each.key].email}"
}

resource "google_pubsub_topic_iam_member" "event_publishers" {
  for_each = local.event_publishers
  topic    = google_pubsub_topic.events.id
  role     = "roles/pubsub.publisher"
  member   = "serviceAccount:${google_service_account.function[each.key].email}"
}

resource "google_secret_manager_secret_iam_member" "llm_users" {
  for_each  = local.llm_users
  secret_id = google_secret_manager_secret.gemini_api_key.id
  role      = "roles/secretmanager.secretAccessor"
  member    = "serviceAccount:${google_service_account.function[each.key].email}"
}

# Poison messages are dead-lettered by the event functions themselves, with their reason.
resource "google_pubsub_topic_iam_member" "dead_letter_writers" {
  for_each = local.pubsub_functions
  topic    = google_pubsub_topic.dead_letter.id
  role     = "roles/pubsub.publisher"
  member   = "serviceAccount:${google_service_account.function[each.key].email}"
}

# -- privacy records in Firestore -------------------------------------------------------------------
# The deletion queue lists pending requests oldest first.
resource "google_firestore_index" "pending_deletions" {
  project    = var.project
  database   = google_firestore_database.profiles.name
  collection = "privacy_deletions"
  fields {
    field_path = "status"
    order      = "ASCENDING"
  }
  fields {
    field_path = "requested_at"
    order      = "ASCENDING"
  }
}

# Used-token nonces are only needed until the token expires.
resource "google_firestore_field" "nonce_expiry" {
  project    = var.project
  database   = google_firestore_database.profiles.name
  collection = "privacy_nonces"
  field      = "expires_at"
  ttl_config {}
}

# -- monitoring: every function writes its metrics; the original design's alert policies ----------
resource "google_project_iam_member" "metric_writers" {
  for_each = var.functions
  project  = var.project
  role     = "roles/monitoring.metricWriter"
  member   = "serviceAccount:${google_service_account.function[each.key].email}"
}

locals {
  metric = "workload_googleapis_com:leafloaf" # OpenTelemetry metrics as PromQL names
  alerts = {
    slow_responses = {
      name  = "LeafLoaf: responses slower than 350 ms (p95)"
      query = "histogram_quantile(0.95, sum by (le, function) (rate(${local.metric}_request_duration_bucket[5m]))) > 350"
    }
    low_personalization = {
      name  = "LeafLoaf: personalization hit rate under 80 %"
      query = "sum(rate(${local.metric}_search_requests{personalized=\"true\"}[10m])) / sum(rate(${local.metric}_search_requests[10m])) < 0.8"
    }
    streaming_errors = {
      name  = "LeafLoaf: more than 1 % of event batches failed to publish"
      query = "sum(rate(${local.metric}_events{outcome=\"failed\"}[10m])) / clamp_min(sum(rate(${local.metric}_events{outcome=\"published\"}[10m])), 1e-9) > 0.01"
    }
  }
}

resource "google_monitoring_alert_policy" "design" {
  for_each              = local.alerts
  display_name          = each.value.name
  combiner              = "OR"
  notification_channels = var.alert_notification_channels
  conditions {
    display_name = each.value.name
    condition_prometheus_query_language {
      query               = each.value.query
      duration            = "300s"
      evaluation_interval = "60s"
    }
  }
  depends_on = [google_project_service.apis]
}

# The deletion queue logs requests past their 72-hour due time at ERROR (shared/services/erasure.py).
resource "google_logging_metric" "overdue_deletions" {
  name   = "leafloaf_overdue_deletions"
  filter = "severity=ERROR AND jsonPayload.message=\"deletion requests are past their 72-hour due time\""
  metric_descriptor {
    metric_kind = "DELTA"
    value_type  = "INT64"
  }
}

resource "google_monitoring_alert_policy" "overdue_deletions" {
  display_name          = "LeafLoaf: a deletion request is past its 72-hour promise"
  combiner              = "OR"
  notification_channels = var.alert_notification_channels
  conditions {
    display_name = "overdue deletion requests logged"
    condition_threshold {
      filter          = "metric.type=\"logging.googleapis.com/user/${google_logging_metric.overdue_deletions.name}\" AND resource.type=\"cloud_run_revision\""
      comparison      = "COMPARISON_GT"
      threshold_value = 0
      duration        = "0s"
      aggregations {
        alignment_period   = "3600s"
        per_series_aligner = "ALIGN_SUM"
      }
    }
  }
}
