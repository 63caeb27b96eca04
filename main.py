"""Entry points of LeafLoaf Personalize: functions-framework's --target names one of these."""

from functions.health import check_health
from functions.preferences import get_live_preferences
from functions.search import search_personalized
from functions.tracking import track_interaction

__all__ = ["check_health", "get_live_preferences", "search_personalized", "track_interaction"]
