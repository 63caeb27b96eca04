"""What Terraform deploys, defined once here from the code: every entry point of main.py with its
trigger, the Pub/Sub topics, the BigQuery tables with their columns, partitioning and clustering,
and the Spanner DDL. `python -m shared.deployment` writes infra/deployment.auto.tfvars.json, which
Terraform reads; tests/contract/test_infra.py fails when that file, main.py or infra/*.tf disagree.
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from shared.domain.pipeline import DEAD_LETTER_TOPIC, EVENT_TABLES, TOPIC

ROOT = Path(__file__).resolve().parent.parent
TFVARS = ROOT / "infra" / "deployment.auto.tfvars.json"


@dataclass(frozen=True)
class Function:
    trigger: str  # "http" (a URL), "pubsub" (a push subscription on the events topic) or "schedule"
    public: bool = False  # callable by any browser (allUsers); else only its invokers
    schedule: str = ""  # cron, for trigger "schedule" (Cloud Scheduler calls it with an OIDC token)
    memory: str = "512Mi"
    timeout_s: int = 60


FUNCTIONS: dict[str, Function] = {
    "track_interaction": Function("http", public=True),
    "search_personalized": Function("http", public=True, memory="1Gi"),
    "rank_personalized": Function("http", public=True, memory="1Gi"),
    "recommend_products": Function("http", public=True, memory="1Gi"),
    "suggest_queries": Function("http", public=True, memory="1Gi"),
    "confirm_order": Function("http", public=True),
    "get_live_preferences": Function("http", public=True),
    "get_shopper_memory": Function("http", public=True),
    "add_memory_note": Function("http", public=True),
    "manage_privacy": Function("http", public=True),  # public URL; the shopper's token is checked
    "export_user_data": Function("http", public=True, memory="1Gi", timeout_s=300),
    "delete_user_data": Function("http", public=True),
    "get_deletion_status": Function("http", public=True),
    "check_health": Function("http"),
    "manage_merchandising_rules": Function("http"),  # the admin API: private, a service identity calls it
    "manage_catalog": Function("http", memory="1Gi"),  # the catalog's admin API: private, as above
    "load_events_bigquery": Function("pubsub"),
    "archive_events": Function("pubsub"),
    "ingest_graph_memory": Function("pubsub", memory="1Gi"),
    "run_hourly_jobs": Function("schedule", schedule="5 * * * *", memory="2Gi", timeout_s=1800),
    "run_daily_jobs": Function("schedule", schedule="30 3 * * *", memory="4Gi", timeout_s=3600),
    "process_deletion_queue": Function("schedule", schedule="15 * * * *", memory="2Gi", timeout_s=3600),
}


def bigquery_tables() -> dict[str, Any]:
    """The event tables as Terraform wants them: schema JSON, partition field, clustering."""
    return {
        table.name: {
            "description": table.description,
            "schema": json.dumps([{"name": c.name, "type": c.type, "mode": c.mode} for c in table.columns]),
            "partition_field": table.partition_field,
            "clustering": list(table.clustering),
        }
        for table in EVENT_TABLES
    }


def spanner_ddl() -> list[str]:
    from shared.adapters.graph_memory.spanner import SCHEMA  # the adapter owns its schema

    return [" ".join(statement.split()) for statement in SCHEMA]


def manifest() -> dict[str, Any]:
    return {
        "functions": {name: asdict(function) for name, function in FUNCTIONS.items()},
        "events_topic": TOPIC,
        "dead_letter_topic": DEAD_LETTER_TOPIC,
        "bigquery_tables": bigquery_tables(),
        "spanner_ddl": spanner_ddl(),
    }


def render() -> str:
    return json.dumps(manifest(), indent=2, sort_keys=True) + "\n"


if __name__ == "__main__":
    if sys.argv[1:] == ["--check"]:
        if not TFVARS.exists() or TFVARS.read_text() != render():
            sys.exit(f"{TFVARS} is stale: run python -m shared.deployment")
    else:
        TFVARS.write_text(render())
        print(f"wrote {TFVARS}")
