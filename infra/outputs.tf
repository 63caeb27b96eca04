output "function_urls" {
  description = "Each function's URL (the public ones are what the store's frontend calls)."
  value       = { for name, f in google_cloudfunctions2_function.function : name => f.service_config[0].uri }
}

output "archive_bucket" {
  description = "The JSONL event archive and the features snapshots."
  value       = google_storage_bucket.archive.name
}

output "events_topic" {
  description = "The Pub/Sub topic of the event batches."
  value       = google_pubsub_topic.events.id
}

output "spanner_database" {
  description = "Graph memory's Spanner database."
  value       = google_spanner_database.memory.id
}
