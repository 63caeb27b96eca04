"""Use case: run a schedule's jobs over the warehouse for one time window, resumably.

A window is the schedule's last completed period (hourly: up to the start of this hour; daily: up
to midnight UTC); every job recomputes its whole table from events before the window's end, so
running it twice for a window gives the same table. `job_runs` records each finished job under
(schedule, job, window_end): a run skips what its schedule has done for the window and resumes
where a crashed run stopped, so a job both schedules share (order_lines) runs once per schedule and
window. Its one table holds the window of whichever schedule built it last, so it is rebuilt first
when a later job of the run still has to read it.
"""

from __future__ import annotations

import json
import logging
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from shared.domain.context import ContextCounter, Moment, PastOrder, nested, tuned_weight
from shared.domain.events import Interaction, as_utc
from shared.domain.jobs import SCHEDULES, Job
from shared.domain.nextbasket import Basket, Params, recommend_from, tune, usual_scores
from shared.domain.ranker_training import ADDED, CLICKED, PURCHASED, LoggedSearch
from shared.domain.rules import ContextRules
from shared.ports.warehouse import Warehouse

log = logging.getLogger(__name__)

PERIOD = {"hourly": timedelta(hours=1), "daily": timedelta(days=1)}
# Both schedules due at once (the local scheduler): daily first, so the hourly run's snapshot, the
# newer version, carries the daily tables too.
RUN_ORDER = ("daily", "hourly")
JOB_RUNS_DDL = (
    "CREATE TABLE IF NOT EXISTS job_runs (schedule STRING, job STRING, window_end TIMESTAMP, output_rows INT64, "
    "seconds FLOAT64, finished_at TIMESTAMP)"
)
# A job_runs table from before schedules were recorded gets the column; its rows (schedule NULL)
# count for no schedule, so each schedule runs its current window once more.
JOB_RUNS_MIGRATION = "ALTER TABLE job_runs ADD COLUMN IF NOT EXISTS schedule STRING"
PUBLISH = "publish"  # the job name a schedule's features publication is recorded under
_IN_SCHEDULES = Counter(job.name for jobs in SCHEDULES.values() for job in jobs)
SHARED = frozenset(name for name, schedules in _IN_SCHEDULES.items() if schedules > 1)  # one table, two windows
CONTEXT_COLUMNS = (("user_id", "STRING"), ("slot", "STRING"), ("category", "STRING"), ("lift", "FLOAT64"))
CONTEXT_WEIGHT_COLUMNS = (("weight", "FLOAT64"), ("tuning", "STRING"))
NEXT_BASKET_COLUMNS = (("user_id", "STRING"), ("position", "INT64"), ("product_id", "STRING"), ("usual", "BOOL"))
DAY_SECONDS = 86_400.0
Logged = tuple[list[LoggedSearch], dict[str, list[Interaction]]]
TrainRanker = Callable[[datetime, dict[str, list[Basket]], Logged, dict[str, float]], dict[str, Any]]


class UnknownSchedule(ValueError):
    """No such schedule or job."""


def prepare_job_runs(warehouse: Warehouse) -> None:
    """Create job_runs, or add the schedule column to one from before it was recorded."""
    warehouse.query(JOB_RUNS_DDL)
    warehouse.query(JOB_RUNS_MIGRATION)


def finished_jobs(warehouse: Warehouse) -> set[str]:
    """The jobs that have finished a run, for any window."""
    prepare_job_runs(warehouse)
    return {row["job"] for row in warehouse.query("SELECT DISTINCT job FROM job_runs")}


def latest_publication(warehouse: Warehouse) -> datetime | None:
    """The end of the newest window whose features were published, by any schedule."""
    prepare_job_runs(warehouse)
    rows = warehouse.query("SELECT MAX(window_end) AS window_end FROM job_runs WHERE job = @job", {"job": PUBLISH})
    return rows[0]["window_end"] if rows else None


def window_end(schedule: str, at: datetime) -> datetime:
    """The end of the schedule's last completed period at `at` (UTC)."""
    at = at.astimezone(UTC)
    if schedule == "hourly":
        return at.replace(minute=0, second=0, microsecond=0)
    return at.replace(hour=0, minute=0, second=0, microsecond=0)


class JobRunner:
    """Runs the jobs of shared.domain.jobs on a warehouse.

    Args:
        warehouse: where the events are and the job tables go.
        after_run: called with the window's end after a schedule completes (publishes the features).
        clock: now, for the window.
        chunk_users: shoppers per chunk in the Python job (bounds its memory with the users' histories).
        list_length: products in each next-basket list.
        params: the recommender's knobs; None tunes them on each run's data.
        train_ranker: trains and publishes the ranking model from shoppers' histories.
        ranking_users: shoppers whose histories the ranking model is trained on, at most.
        ranking_searches: the latest searches (with their impressions) the ranking model learns from, at most.
        context: the context engine's rules (the store's time zone the orders' moments are read in).
    """

    def __init__(
        self,
        warehouse: Warehouse,
        after_run: Callable[[datetime], dict[str, Any]] | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        chunk_users: int = 2_000,
        list_length: int = 20,
        params: Params | None = None,
        train_ranker: TrainRanker | None = None,
        ranking_users: int = 2_000,
        ranking_searches: int = 20_000,
        context: ContextRules | None = None,
    ) -> None:
        self.context = context or ContextRules()  # the store's time zone, for the context_patterns job
        self.train_ranker = train_ranker  # the ranking_model job (shared.services.ranking.RankerTrainer)
        self.ranking_users = ranking_users
        self.ranking_searches = ranking_searches
        self.warehouse = warehouse
        self.after_run = after_run
        self.clock = clock
        self.chunk_users = chunk_users
        self.list_length = list_length
        self.params = params  # None: tuned on the first chunk of shoppers at each run (nextbasket.tune)

    def run(self, schedule: str, at: datetime | None = None, only: Sequence[str] = (), force: bool = False) -> dict:
        """Run the schedule's jobs (or `only` these) for the window at `at` (default now).

        Returns:
            A summary: the window, each job's status (done / skipped), rows and seconds.

        Raises:
            UnknownSchedule: no such schedule or job name.
            WarehouseUnavailable: the warehouse failed; finished jobs stay done, so a retry resumes.
        """
        if schedule not in SCHEDULES:
            raise UnknownSchedule(f"unknown schedule {schedule!r}: choose one of {sorted(SCHEDULES)}")
        jobs = SCHEDULES[schedule]
        unknown = sorted(set(only) - {job.name for job in jobs})
        if unknown:
            raise UnknownSchedule(f"no job {', '.join(unknown)} in {schedule}: choose from {[j.name for j in jobs]}")
        chosen = [job for job in jobs if not only or job.name in only]
        end = window_end(schedule, at or self.clock())
        prepare_job_runs(self.warehouse)
        done = set() if force else self._done(schedule, end)
        built = self._latest_windows()  # the window each table holds now
        started = time.perf_counter()
        report: list[dict[str, Any]] = []
        for number, job in enumerate(chosen, start=1):
            later = any(other.name not in done for other in chosen[number:])
            stale = job.name in done and job.name in SHARED and built.get(job.name) != end and later
            if job.name in done and not stale:
                log.info("job %s/%s %s: already done for %s", number, len(chosen), job.name, end.isoformat())
                report.append({"job": job.name, "status": "skipped", "reason": "done for this window"})
                continue
            log.info("job %s/%s %s: running for the window ending %s", number, len(chosen), job.name, end.isoformat())
            job_started = time.perf_counter()
            rows = self._python_job(job.name, end) if job.python else self._run_sql(job, end)
            seconds = time.perf_counter() - job_started
            self._record(schedule, job.name, end, rows, seconds)
            built[job.name] = end
            log.info("job %s/%s %s: %s rows in %.1f s", number, len(chosen), job.name, rows, seconds)
            entry = {"job": job.name, "status": "done", "rows": rows, "seconds": round(seconds, 3)}
            report.append(entry | ({"reason": "its table held another window"} if stale else {}))
        summary: dict[str, Any] = {"schedule": schedule, "window_end": end.isoformat(), "jobs": report}
        # Publish once a window too (the local server asks every minute): again only when a job
        # ran, or when a run stopped between its last job and the publication.
        ran = any(entry["status"] == "done" for entry in report)
        if self.after_run is not None and (ran or PUBLISH not in done):
            publish_started = time.perf_counter()
            features = self.after_run(end)
            documents = features.get("user", 0) + features.get("product", 0)
            self._record(schedule, PUBLISH, end, documents, time.perf_counter() - publish_started)
            summary["features"] = features
        summary["seconds"] = round(time.perf_counter() - started, 3)
        return summary

    def _done(self, schedule: str, end: datetime) -> set[str]:
        """The jobs (and the publication) the schedule has finished for the window ending at `end`."""
        rows = self.warehouse.query(
            "SELECT DISTINCT job FROM job_runs WHERE schedule = @schedule AND window_end = @window_end",
            {"schedule": schedule, "window_end": end},
        )
        return {row["job"] for row in rows}

    def _latest_windows(self) -> dict[str, datetime]:
        rows = self.warehouse.query(
            "SELECT job, ARRAY_AGG(window_end ORDER BY finished_at DESC)[OFFSET(0)] AS window_end "
            "FROM job_runs GROUP BY job"
        )
        return {row["job"]: as_utc(row["window_end"]) for row in rows}

    def _run_sql(self, job: Job, end: datetime) -> int:
        sql = job.sql
        params = {name: value for name, value in ({"window_end": end} | job.params).items() if f"@{name}" in sql}
        self.warehouse.query(f"CREATE OR REPLACE TABLE {job.name} AS\n{sql}", params)
        return int(self.warehouse.query(f"SELECT COUNT(*) AS n FROM {job.name}")[0]["n"])

    def _record(self, schedule: str, job: str, end: datetime, rows: int, seconds: float) -> None:
        now = datetime.now(UTC)  # not `clock` (the window's): the table standing is the last one written
        self.warehouse.query(
            "INSERT INTO job_runs (schedule, job, window_end, output_rows, seconds, finished_at) "
            "VALUES (@schedule, @job, @window_end, @rows, @seconds, @finished_at)",
            {"schedule": schedule, "job": job, "window_end": end, "rows": rows, "seconds": seconds, "finished_at": now},
        )

    # -- the Python jobs -----------------------------------------------------------------------------
    def _python_job(self, name: str, end: datetime) -> int:
        if name == "next_basket":
            return self._next_basket()
        if name == "context_patterns":
            return self._context_patterns()
        return self._ranking_model(end)

    def _ranking_model(self, end: datetime) -> int:
        """Train the ranking model on the histories of up to `ranking_users` shoppers (the first by
        id: ids carry no order) and publish it; the rows are the training rows."""
        if self.train_ranker is None:
            log.info("ranking_model: no trainer configured; skipped")
            return 0
        histories: dict[str, list[Basket]] = {}
        for chunk in self._history_chunks():
            histories |= dict(list(chunk.items())[: self.ranking_users - len(histories)])
            if len(histories) >= self.ranking_users:
                break
        popularity = {
            row["product_id"]: float(row["orders"])
            for row in self.warehouse.query(
                "SELECT product_id, COUNT(DISTINCT CONCAT(user_id, '/', order_id)) AS orders "
                "FROM order_lines GROUP BY product_id"
            )
        }  # over every shopper: the replays are capped, the store's popularity is not
        metrics = self.train_ranker(end, histories, self._logged_searches(end), popularity)
        return int(metrics.get("training_rows", 0))

    def _logged_searches(self, end: datetime) -> tuple[list[LoggedSearch], dict[str, list[Interaction]]]:
        """The latest `ranking_searches` searches with the outcome of every result they showed (the
        search_outcomes job's table), and their shoppers' events of the year before the window's end
        (older ones are out of every profile memory)."""
        if "search_outcomes" not in finished_jobs(self.warehouse):
            return [], {}
        latest = (
            "WITH latest AS (SELECT search_id, MIN(searched_at) AS first_seen FROM search_outcomes "
            "GROUP BY search_id ORDER BY first_seen DESC, search_id LIMIT @n) "
        )
        params = {"n": self.ranking_searches}
        rows = self.warehouse.query(
            latest + "SELECT o.search_id, o.user_id, o.searched_at, o.search_query, o.product_id, o.clicked, "
            "o.added_to_cart, o.purchased FROM search_outcomes AS o JOIN latest ON latest.search_id = o.search_id "
            "ORDER BY o.searched_at DESC, o.search_id, o.position",
            params,
        )
        shown: dict[str, list[tuple[str, float]]] = defaultdict(list)
        for row in rows:
            grade = (
                PURCHASED if row["purchased"] else ADDED if row["added_to_cart"] else CLICKED if row["clicked"] else 0.0
            )
            shown[row["search_id"]].append((row["product_id"], grade))
        first = {row["search_id"]: row for row in rows}
        searches = [
            LoggedSearch(r["user_id"], as_utc(r["searched_at"]), r["search_query"], tuple(shown[sid]))
            for sid, r in first.items()
        ]
        events: dict[str, list[Interaction]] = defaultdict(list)
        for row in self.warehouse.query(
            latest + "SELECT user_id, raw_event_data FROM raw_user_actions WHERE event_type != 'search' "
            "AND event_timestamp >= @since AND event_timestamp < @window_end AND user_id IN "
            "(SELECT DISTINCT o.user_id FROM search_outcomes AS o JOIN latest ON latest.search_id = o.search_id) "
            "ORDER BY user_id, event_timestamp",
            params | {"window_end": end, "since": end - timedelta(days=365)},
        ):
            data = row["raw_event_data"]
            events[row["user_id"]].append(
                Interaction.model_validate(json.loads(data) if isinstance(data, str) else data)
            )
        return searches, dict(events)

    def _next_basket(self) -> int:
        """Next-basket lists for every shopper: their usual scores are computed a chunk of shoppers
        at a time from order_lines (only the scores are kept), then ranked a block at a time."""
        profiles: dict[str, dict[str, float]] = {}
        params = self.params
        for histories in self._history_chunks():
            if params is None:  # the first chunk of shoppers is the tuning sample
                params = tune(histories, self.list_length)
                log.info("next_basket: tuned %s on %s shoppers", params, len(histories))
            for user, history in histories.items():
                profiles[user] = usual_scores(history, params)
        popular = [
            row["product_id"]
            for row in self.warehouse.query(
                "SELECT product_id FROM order_lines GROUP BY product_id "
                "ORDER BY COUNT(DISTINCT CONCAT(user_id, '/', order_id)) DESC, product_id LIMIT @k",
                {"k": self.list_length},
            )
        ]
        users = sorted(profiles)
        ranked = recommend_from(profiles, users, self.list_length, popular, params)
        return self.warehouse.replace_table("next_basket", NEXT_BASKET_COLUMNS, self._rows(ranked, profiles))

    def _rows(self, ranked: Iterator[tuple[str, list[str]]], profiles: dict[str, dict[str, float]]) -> Iterator[list]:
        chunk: list[dict[str, Any]] = []
        for user, products in ranked:
            usual = profiles[user]
            chunk += [
                {"user_id": user, "position": i, "product_id": p, "usual": p in usual} for i, p in enumerate(products)
            ]
            if len(chunk) >= 50_000:
                yield chunk
                chunk = []
        yield chunk

    def _history_chunks(self) -> Iterator[dict[str, list[Basket]]]:
        """Every shopper's baskets, oldest first, `chunk_users` shoppers at a time."""
        for first, last in self._user_ranges():
            rows = self.warehouse.query(
                "SELECT user_id, order_id, MIN(ordered_at) AS ordered_at, ARRAY_AGG(product_id ORDER BY product_id) "
                "AS products FROM order_lines WHERE user_id >= @first AND user_id <= @last "
                "GROUP BY user_id, order_id ORDER BY user_id, ordered_at, order_id",
                {"first": first, "last": last},
            )
            histories: dict[str, list[Basket]] = {}
            for row in rows:
                day = as_utc(row["ordered_at"]).timestamp() / DAY_SECONDS
                histories.setdefault(row["user_id"], []).append(Basket(tuple(row["products"]), day))
            yield histories

    def _user_ranges(self) -> Iterator[tuple[str, str]]:
        """(first, last) shopper ids of order_lines, `chunk_users` shoppers at a time (keyset pages)."""
        after = ""
        while True:
            users = [
                row["user_id"]
                for row in self.warehouse.query(
                    "SELECT DISTINCT user_id FROM order_lines WHERE user_id > @after ORDER BY user_id LIMIT @n",
                    {"after": after, "n": self.chunk_users},
                )
            ]
            if not users:
                return
            after = users[-1]
            yield users[0], after

    def _context_patterns(self) -> int:
        """Category lifts by moment (shared.domain.context) from every order line, in the store's
        local time: store-wide rows (user_id NULL) and each shopper's, a chunk of shoppers at a time;
        then the weight of the lift, tuned on the first chunk's shoppers (table context_weight)."""
        zone = ZoneInfo(self.context.timezone)
        counter = ContextCounter()
        shoppers: list[tuple[str | None, str, str, float]] = []  # (user, slot, category, lift): compact until written
        sample: dict[str, list[PastOrder]] | None = None  # the tuning shoppers' orders
        counted = 0
        for first, last in self._user_ranges():
            orders: dict[str, list[PastOrder]] = {}
            for row in self.warehouse.query(
                "SELECT user_id, order_id, MIN(ordered_at) AS ordered_at, ANY_VALUE(weather) AS weather, "
                "ARRAY_AGG(STRUCT(product_id, product_category AS category) ORDER BY product_id) AS lines "
                "FROM order_lines WHERE user_id >= @first AND user_id <= @last "
                "GROUP BY user_id, order_id ORDER BY user_id, ordered_at, order_id",
                {"first": first, "last": last},
            ):
                moment = Moment.at(as_utc(row["ordered_at"]).astimezone(zone), row["weather"])
                lines = tuple((line["product_id"], line["category"]) for line in row["lines"] if line["category"])
                order = PastOrder(moment, lines)
                counter.add_order(row["user_id"], order)
                orders.setdefault(row["user_id"], []).append(order)
            sample = orders if sample is None else sample
            taken = counter.take_shoppers()
            shoppers += [(user, *lift) for user, lifts in taken.items() for lift in lifts]
            counted += len(taken)
            log.info("context_patterns: %s shoppers counted (up to %s)", counted, last)
        store = counter.store_lifts()
        weight, tuning = tuned_weight(sample or {}, nested(store), self.context.cap)
        log.info("context_patterns: weight %s tuned on %s shoppers: %s", weight, tuning["shoppers"], tuning["ndcg@10"])
        self.warehouse.replace_table(
            "context_weight", CONTEXT_WEIGHT_COLUMNS, iter([[{"weight": weight, "tuning": json.dumps(tuning)}]])
        )
        rows = [(None, *lift) for lift in store] + shoppers
        chunks = (
            [dict(zip(("user_id", "slot", "category", "lift"), row, strict=True)) for row in rows[i : i + 50_000]]
            for i in range(0, len(rows), 50_000)
        )
        return self.warehouse.replace_table("context_patterns", CONTEXT_COLUMNS, chunks)
