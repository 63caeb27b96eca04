"""The warehouse in BigQuery: tables as in shared.domain.pipeline, written with one MERGE per batch.

Why MERGE and not insertAll: insert ids deduplicate only best-effort (about a minute), while the
pipeline must not duplicate a row whatever the redelivery delay. One MERGE per table per bus
message (up to 100 events) keeps DML well inside BigQuery's per-table concurrency limits at
this product's volumes; the README says when to move to the Storage Write API.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from google.api_core import exceptions as google_exceptions
from google.api_core.client_options import ClientOptions
from google.auth.credentials import AnonymousCredentials
from google.cloud import bigquery

from shared.config import Settings
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
    """MERGE the @rows struct array into the table, inserting event ids it lacks."""
    types = {c.name: c.type for c in table.columns}
    values = ", ".join(f"PARSE_JSON(S.{c})" if types[c] == "JSON" else f"S.{c}" for c in columns)
    return (
        f"MERGE {table.name} T USING UNNEST(@rows) S ON T.event_id = S.event_id "
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
                job = self.client.query(
                    merge_statement(table, columns), job_config=self._job_config([param]), retry=self.retry
                )
                job.result(timeout=self.timeout_s)
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
                rows = [{c: _jsonable(row.get(c)) for c, _ in columns} for row in chunk]
                self.client.load_table_from_json(rows, table, job_config=config).result(timeout=self.timeout_s)
                disposition = bigquery.WriteDisposition.WRITE_APPEND
            return int(self.query(f"SELECT COUNT(*) AS n FROM {name}")[0]["n"])
        except TRANSIENT as exc:
            raise WarehouseUnavailable(f"BigQuery: {exc}") from exc

    def query(self, sql: str, params: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
        parameters = [_parameter(name, value) for name, value in (params or {}).items()]
        try:
            job = self.client.query(sql, job_config=self._job_config(parameters), retry=self.retry)
            return [dict(row.items()) for row in job.result(timeout=self.timeout_s)]
        except TRANSIENT as exc:
            raise WarehouseUnavailable(f"BigQuery: {exc}") from exc

    def close(self) -> None:
        self.client.close()


def _jsonable(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value


def _parameter(name: str, value: Any) -> Any:
    kinds = {bool: "BOOL", int: "INT64", float: "FLOAT64", str: "STRING", datetime: "TIMESTAMP"}
    if isinstance(value, list | tuple):
        kind = kinds.get(type(value[0]), "STRING") if value else "STRING"
        return bigquery.ArrayQueryParameter(name, kind, list(value))
    return bigquery.ScalarQueryParameter(name, kinds.get(type(value), "STRING"), value)
