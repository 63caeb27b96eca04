"""The scheduled jobs: BigQuery SQL written once (run on DuckDB through sqlglot), in run order.

Each SQL job is `<name>.sql` beside this file: one SELECT over the warehouse (or earlier jobs'
tables) whose result becomes the table `<name>`, recomputed whole for its time window (events
before `@window_end`), so a job run twice for a window gives the same table. A job with no SQL
runs in Python (shared.services.jobs) where SQL cannot do the work.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).parent


@dataclass(frozen=True)
class Job:
    name: str
    params: dict[str, Any] = field(default_factory=dict)  # besides @window_end
    python: bool = False  # computed in Python from tables the SQL jobs wrote

    @property
    def sql(self) -> str:
        return (HERE / f"{self.name}.sql").read_text()

    @property
    def description(self) -> str:
        """The SQL file's leading comment (or the Python job's purpose)."""
        if self.python:
            return PYTHON_JOBS[self.name]
        lines = self.sql.splitlines()
        return " ".join(line.removeprefix("--").strip() for line in lines if line.startswith("--"))


PYTHON_JOBS = {
    "ranking_model": "The search ranking model (shared.domain.ranker_training): purchase replays of up to "
    "2,000 shoppers' order_lines, a LambdaRank correction on the rules score, published as the window's "
    "ranking artifact (with the store's popularity) only when it beats the serving ranking on held-out shoppers.",
    "context_patterns": "Category lift by moment (shared.domain.context): how much more each category sells on each "
    "weekday and part of the day, in each season, for the whole store and for each shopper (their part of the day "
    "and weekday), smoothed towards 1, from order_lines in the store's time zone.",
    "next_basket": "Each shopper's next-basket list ('my usual' with reorder timing, then collaborative picks) "
    "from shared.domain.nextbasket, streamed from order_lines in chunks of shoppers.",
}

ORDER_LINES = Job("order_lines")
HOURLY: tuple[Job, ...] = (
    ORDER_LINES,
    Job("product_associations", {"min_pair_orders": 2}),
    Job("user_segments"),
    Job("time_patterns"),
    Job("preference_evolution"),
    Job("reorder_predictions"),
    Job("quantity_predictions"),
    Job("dietary_patterns", {"min_lines": 3, "min_share": 0.5}),
    Job("trending_products", {"min_recent": 3, "top": 100}),
)
DAILY: tuple[Job, ...] = (
    ORDER_LINES,
    Job("item_neighbours", {"max_items_per_user": 100, "min_shared_buyers": 2, "neighbours": 20}),
    Job("discovery_items", {"discoveries": 10}),
    Job("category_relationships"),
    Job("price_sensitivity", {"prior_lines": 5}),
    Job("seasonal_patterns"),
    Job("user_category_preferences", {"daily_decay": 0.95}),
    Job("product_popularity"),
    Job("user_cohorts"),
    Job("search_outcomes"),
    Job("popular_queries", {"min_shoppers": 5, "top": 1000}),
    Job("user_queries", {"per_shopper": 20}),
    Job("context_patterns", python=True),
    Job("next_basket", python=True),
    Job("ranking_model", python=True),
)
SCHEDULES = {"hourly": HOURLY, "daily": DAILY}
