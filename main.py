"""Entry points of LeafLoaf Personalize: functions-framework's --target names one of these."""

from functions.catalog import manage_catalog
from functions.health import check_health
from functions.jobs import run_daily_jobs, run_hourly_jobs
from functions.memory import add_memory_note, get_shopper_memory
from functions.merchandising import manage_merchandising_rules
from functions.orders import confirm_order
from functions.pipeline import archive_events, ingest_graph_memory, load_events_bigquery
from functions.preferences import get_live_preferences
from functions.privacy import (
    delete_user_data,
    export_user_data,
    get_deletion_status,
    manage_privacy,
    process_deletion_queue,
)
from functions.rank import rank_personalized
from functions.recommendations import recommend_products
from functions.search import search_personalized
from functions.suggest import suggest_queries
from functions.tracking import track_interaction

__all__ = [
    "add_memory_note",
    "archive_events",
    "check_health",
    "confirm_order",
    "delete_user_data",
    "export_user_data",
    "get_deletion_status",
    "get_live_preferences",
    "get_shopper_memory",
    "ingest_graph_memory",
    "load_events_bigquery",
    "manage_catalog",
    "manage_merchandising_rules",
    "manage_privacy",
    "process_deletion_queue",
    "rank_personalized",
    "recommend_products",
    "run_daily_jobs",
    "run_hourly_jobs",
    "search_personalized",
    "suggest_queries",
    "track_interaction",
]
