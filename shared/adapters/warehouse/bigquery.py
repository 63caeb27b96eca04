"""The warehouse in BigQuery: tables as in shared.domain.pipeline, written with one MERGE per batch.

Why MERGE and not insertAll: insert ids deduplicate only best-effort (about a minute), while the
pipeline must not duplicate a row whatever the redelivery delay. One MERGE per table per bus
message (up to 100 events) keeps DML well inside BigQuery's per-table concurrency limits at
this product's volumes; the README says when to move to the Storage Write API.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from google.api_core import exceptions as google_exceptions
from google.api_core.client_options import ClientOptions
from google.auth.credentials import AnonymousCredentials
from google.cloud import bigquery
from google.cloud.bigquery.retry import DEFAULT_JOB_RETRY

from shared.config import Settings
from shared.domain.jsonable import jsonable
from shared.domain.pipeline import EVENT_TABLES, Table
from shared.ports.warehouse import Warehouse, WarehouseUnavailable

TABLES = {table.name: table for table in EVENT_TABLES}
# Errors worth a retry: the service or network, not our SQL.
TRANSIENT = (
    google_exceptions.ServerError,
    google_exceptions.TooManyRequests,
    google_exceptions.ServiceUnavailable,
    google_exceptions.RetryError,
    OSError,  # connection refused or reset (requests' errors are OSErrors), timeouts
)
SCALAR = {"STRING": "STRING", "TIMESTAMP": "TIMESTAMP", "INT64": "INT64", "FLOAT64": "FLOAT64", "JSON": "STRING"}


def merge_statement(table: Table, columns: list[str]) -> str:
    """MERGE the @rows struct array into the table, inserting rows whose key (event_id) it lacks."""
    types = {c.name: c.type for c in table.columns}
    values = ", ".join(f"PARSE_JSON(S.{c})" if types[c] == "JSON" else f"S.{c}" for c in columns)
    matched = " AND ".join(f"T.{c} = S.{c}" for c in table.key)
    return (
        f"MERGE {table.name} T USING UNNEST(@rows) S ON {matched} "
        f"WHEN NOT MATCHED THEN INSERT ({', '.join(columns)}) VALUES ({values})"
    )


class BigQueryWarehouse(Warehouse):
    def __init__(self, client: bigquery.Client, dataset: str, timeout_s: float = 30.0) -> None:
        self.client = client
        self.dataset = f"{client.project}.{dataset}"
        self.timeout_s = timeout_s
        # Retry transient errors, but within the delivery's time: a down backend fails fast and
        # the bus redelivers later.
        self.retry = bigquery.DEFAULT_RETRY.with_deadline(timeout_s)
        # Query jobs have outer retries of their own (10 minutes to insert, 40 to finish by default):
        # unbounded, a stopped BigQuery held a delivery past them (seen with the emulator stopped).
        self.job_retry = DEFAULT_JOB_RETRY.with_deadline(timeout_s)
        self._ready = False

    @classmethod
    def from_settings(cls, settings: Settings) -> BigQueryWarehouse:
        if settings.bigquery_endpoint:  # an emulator: no credentials
            client = bigquery.Client(
                project=settings.warehouse_project,
                client_options=ClientOptions(api_endpoint=settings.bigquery_endpoint),
                credentials=AnonymousCredentials(),
            )
        else:
            client = bigquery.Client(project=settings.warehouse_project)
        return cls(client, settings.warehouse_dataset, settings.warehouse_timeout_s)

    def ensure_tables(self) -> None:
        """Create the dataset and tables if missing (Terraform creates them in production)."""
        self.client.create_dataset(self.dataset, exists_ok=True, retry=self.retry, timeout=self.timeout_s)
        for table in EVENT_TABLES:
            resource = bigquery.Table(
                f"{self.dataset}.{table.name}",
                schema=[bigquery.SchemaField(c.name, c.type, mode=c.mode) for c in table.columns],
            )
            resource.time_partitioning = bigquery.TimePartitioning(type_="DAY", field=table.partition_field)
            resource.clustering_fields = list(table.clustering)
            resource.description = table.description
            self.client.create_table(resource, exists_ok=True, retry=self.retry, timeout=self.timeout_s)
        self._ready = True

    def _job_config(self, params: list[Any]) -> bigquery.QueryJobConfig:
        return bigquery.QueryJobConfig(default_dataset=self.dataset, query_parameters=params)

    def _run(self, sql: str, params: list[Any]) -> tuple[bigquery.QueryJob, Iterable[Any]]:
        """Run a query within the timeout, retries included; the job and its rows."""
        # job_retry=None: the insert's own 10-minute retry is not bounded by job_retry's deadline
        job = self.client.query(sql, job_config=self._job_config(params), retry=self.retry, job_retry=None)
        return job, job.result(timeout=self.timeout_s, retry=self.retry, job_retry=self.job_retry)

    def insert(self, rows: Mapping[str, list[dict[str, Any]]]) -> int:
        try:
            if not self._ready:
                self.ensure_tables()
            inserted = 0
            for name, table_rows in rows.items():
                if not table_rows:  # an empty array parameter is an error
                    continue
                table = TABLES[name]
                columns = list(table_rows[0])
                param = bigquery.ArrayQueryParameter("rows", "STRUCT", [self._struct(table, r) for r in table_rows])
                job, _ = self._run(merge_statement(table, columns), [param])
                inserted += job.num_dml_affected_rows or 0
            return inserted
        except TRANSIENT as exc:
            raise WarehouseUnavailable(f"BigQuery: {exc}") from exc

    @staticmethod
    def _struct(table: Table, row: dict[str, Any]) -> bigquery.StructQueryParameter:
        types = {c.name: c.type for c in table.columns}
        fields = []
        for name, value in row.items():
            kind = SCALAR[types[name]]
            if kind == "TIMESTAMP" and isinstance(value, str):
                value = datetime.fromisoformat(value)
            fields.append(bigquery.ScalarQueryParameter(name, kind, value))
        return bigquery.StructQueryParameter(None, *fields)

    def replace_table(
        self, name: str, columns: Sequence[tuple[str, str]], chunks: Iterable[list[dict[str, Any]]]
    ) -> int:
        """One load job per chunk: the first truncates the table, the rest append (load jobs are free
        and atomic, unlike DML)."""
        schema = [bigquery.SchemaField(c, t) for c, t in columns]
        table = f"{self.dataset}.{name}"
        disposition = bigquery.WriteDisposition.WRITE_TRUNCATE
        try:
            self.client.delete_table(table, not_found_ok=True, retry=self.retry, timeout=self.timeout_s)
            self.client.create_table(bigquery.Table(table, schema=schema), retry=self.retry, timeout=self.timeout_s)
            for chunk in chunks:
                if not chunk:
                    continue
                config = bigquery.LoadJobConfig(schema=schema, write_disposition=disposition)
                rows = [{c: jsonable(row.get(c)) for c, _ in columns} for row in chunk]
                job = self.client.load_table_from_json(rows, table, job_config=config)
                job.result(retry=self.retry, timeout=self.timeout_s)
                disposition = bigquery.WriteDisposition.WRITE_APPEND
            return int(self.query(f"SELECT COUNT(*) AS n FROM {name}")[0]["n"])
        except TRANSIENT as exc:
            raise WarehouseUnavailable(f"BigQuery: {exc}") from exc

    def query(self, sql: str, params: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
        parameters = [_parameter(name, value) for name, value in (params or {}).items()]
        try:
            _, rows = self._run(sql, parameters)
            return [dict(row.items()) for row in rows]
        except TRANSIENT as exc:
            raise WarehouseUnavailable(f"BigQuery: {exc}") from exc

    def user_rows(self, user_id: str, limit: int = 10_000) -> dict[str, list[dict[str, Any]]]:
        found = {}
        for table in self._user_tables():
            sql = f"SELECT * FROM `{table}` WHERE user_id = @user_id LIMIT {int(limit)}"
            if rows := self.query(sql, {"user_id": user_id}):
                found[table] = [{c: jsonable(v) for c, v in row.items()} for row in rows]
        return found

    def delete_users(self, user_ids: Collection[str]) -> dict[str, int]:
        if not user_ids:
            return {}
        return self._delete(self._user_tables(), "user_id IN UNNEST(@user_ids)", {"user_ids": list(user_ids)})

    def delete_events_before(self, cutoff: datetime, user_ids: Collection[str] | None = None) -> int:
        params: dict[str, Any]
        if user_ids is None:
            where, params = "event_timestamp < @cutoff", {"cutoff": cutoff}
        elif user_ids:
            where = "event_timestamp < @cutoff AND user_id IN UNNEST(@user_ids)"
            params = {"cutoff": cutoff, "user_ids": list(user_ids)}
        else:
            return 0
        return sum(self._delete([t.name for t in EVENT_TABLES], where, params).values())

    def _delete(self, tables: list[str], where: str, params: Mapping[str, Any]) -> dict[str, int]:
        """One DELETE per table; rows deleted per table, where any were."""
        parameters = [_parameter(name, value) for name, value in params.items()]
        deleted = {}
        try:
            if not self._ready:
                self.ensure_tables()
            for table in tables:
                job, _ = self._run(f"DELETE FROM `{table}` WHERE {where}", parameters)
                if job.num_dml_affected_rows:
                    deleted[table] = job.num_dml_affected_rows
            return deleted
        except TRANSIENT as exc:
            raise WarehouseUnavailable(f"BigQuery: {exc}") from exc

    def _user_tables(self) -> list[str]:
        """The dataset's tables with a user_id column: the event tables and the jobs' outputs. Read
        from the tables' metadata (free API calls): bqemulator never answers an INFORMATION_SCHEMA
        query that has a default dataset, as every query here does."""
        try:
            if not self._ready:
                self.ensure_tables()
            listed = self.client.list_tables(self.dataset, retry=self.retry, timeout=self.timeout_s)
            return [
                t.table_id
                for t in listed
                if t.table_type == "TABLE"
                and any(
                    f.name == "user_id"
                    for f in self.client.get_table(t, retry=self.retry, timeout=self.timeout_s).schema
                )
            ]
        except TRANSIENT as exc:
            raise WarehouseUnavailable(f"BigQuery: {exc}") from exc

    def close(self) -> None:
        self.client.close()


def _parameter(name: str, value: Any) -> Any:
    kinds = {bool: "BOOL", int: "INT64", float: "FLOAT64", str: "STRING", datetime: "TIMESTAMP"}
    if isinstance(value, list | tuple):
        kind = kinds.get(type(value[0]), "STRING") if value else "STRING"
        return bigquery.ArrayQueryParameter(name, kind, list(value))
    return bigquery.ScalarQueryParameter(name, kinds.get(type(value), "STRING"), value)
