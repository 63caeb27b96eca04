variable "project" {
  description = "The Google Cloud project to deploy into."
  type        = string
}

variable "region" {
  description = "Region of the functions, bucket, BigQuery dataset, Spanner instance and Scheduler jobs."
  type        = string
  default     = "europe-west1"
}

variable "dataset" {
  description = "BigQuery dataset of the event tables and the jobs' tables."
  type        = string
  default     = "leafloaf"
}

variable "raw_event_retention_days" {
  description = "Raw events older than this are removed: BigQuery partition expiry and the archive's lifecycle."
  type        = number
  default     = 90
}

variable "cors_origins" {
  description = "Comma-separated origins allowed to call the public functions from a browser."
  type        = string
  default     = "*"
}

variable "spanner_processing_units" {
  description = "Spanner compute for graph memory (100 is the smallest instance)."
  type        = number
  default     = 100
}

# Generated from the code by `python -m shared.deployment` into deployment.auto.tfvars.json:
# never edited by hand (tests/contract/test_infra.py fails when it is stale).
variable "functions" {
  description = "Every entry point of main.py: trigger (http, pubsub, schedule), public, schedule, memory, timeout_s."
  type = map(object({
    trigger   = string
    public    = bool
    schedule  = string
    memory    = string
    timeout_s = number
  }))
}

variable "events_topic" {
  description = "The Pub/Sub topic the publisher writes event batches to."
  type        = string
}

variable "dead_letter_topic" {
  description = "Where messages go after max delivery attempts."
  type        = string
}

variable "bigquery_tables" {
  description = "The event tables: schema (JSON), partition field (by day), clustering."
  type = map(object({
    description     = string
    schema          = string
    partition_field = string
    clustering      = list(string)
  }))
}

variable "spanner_ddl" {
  description = "Graph memory's tables (shared/adapters/graph_memory/spanner.py SCHEMA)."
  type        = list(string)
}

variable "support_service_accounts" {
  description = "Service accounts (e.g. the store's support backend) allowed to read, change and delete any shopper's data with a Google OIDC token."
  type        = list(string)
  default     = []
}

variable "alert_notification_channels" {
  description = "Cloud Monitoring notification channel ids the alert policies notify (none: the alerts only show in the console)."
  type        = list(string)
  default     = []
}
