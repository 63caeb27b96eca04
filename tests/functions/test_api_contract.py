"""The API contract: /openapi.json is built from the functions' pydantic models, and every operation,
fuzzed with schemathesis against the local app, never answers 500 and always matches the schema."""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import negative_data_rejection, positive_data_acceptance

from functions.local_server import create_local_app
from shared import bootstrap
from tests.conftest import installed_services

APP = create_local_app()
schema = schemathesis.openapi.from_wsgi("/openapi.json", APP)


@pytest.fixture(scope="module", autouse=True)
def services(tmp_path_factory):
    services = installed_services(tmp_path_factory.mktemp("api"))
    yield
    services.close()
    bootstrap.install(None)


def test_the_document_covers_every_http_function():
    import main

    operations = {op["operationId"] for path in schema.raw_schema["paths"].values() for op in path.values()}
    http = {
        name for name in main.__all__ if name not in ("load_events_bigquery", "archive_events", "ingest_graph_memory")
    }
    assert operations == http


@schema.parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_500_and_every_answer_matches_the_schema(case):
    if case.operation.path in ("/jobs/hourly", "/jobs/daily") and isinstance(case.body, dict):
        case.body = {"jobs": ["order_lines"]}  # keep the runs short
    # Every default check (no 5xx, documented status, content type, body schema) but two:
    # cross-field rules (a search event needs a query) are beyond JSON Schema, so a schema-valid
    # body may rightly get a 400 naming the field; and pydantic's lax parsing accepts what the
    # schema states more strictly (0 for false, epoch seconds for a time), on purpose.
    excluded = [positive_data_acceptance, negative_data_rejection]
    if case.operation.path.endswith("/memory/notes"):
        excluded.append(not_a_server_error)  # 501 llm_not_configured is the documented answer here
    response = case.call_and_validate(excluded_checks=excluded)
    assert response.status_code != 500, response.text
