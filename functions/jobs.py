"""HTTP, called by Cloud Scheduler (with an OIDC token the platform verifies: these functions are
private; with authentication on, a service identity's token is needed): run the hourly or daily
jobs for their window and publish the features. The body is optional: {"at": ISO time (default
now; at most the clock skew ahead), "jobs": [names] (default all), "force": false}."""

from __future__ import annotations

import flask
import functions_framework
from pydantic import BaseModel, ConfigDict, Field

from functions.http import RequestError, endpoint, json_body, scheduled, validate
from shared.bootstrap import container
from shared.domain.events import Timestamp
from shared.ports.warehouse import WarehouseUnavailable
from shared.services.jobs import UnknownSchedule


class JobRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    at: Timestamp | None = None  # a window of the future would be recorded as done before it ends
    jobs: list[str] = Field(default_factory=list, max_length=50)
    force: bool = False


def _run(request: flask.Request, schedule: str) -> tuple[int, dict]:
    scheduled(request)
    body = json_body(request) if request.content_length else {}
    job = validate(JobRequest, body)
    try:
        return 200, container().jobs.run(schedule, job.at, job.jobs, job.force)
    except UnknownSchedule as exc:
        raise RequestError("invalid_request", str(exc), [{"field": "jobs", "message": str(exc)}]) from None
    except WarehouseUnavailable as exc:  # Cloud Scheduler retries; finished jobs are not redone
        raise RequestError("backend_unavailable", f"the warehouse failed: {exc}", status=503) from None


@functions_framework.http
@endpoint("POST")
def run_hourly_jobs(request: flask.Request) -> tuple[int, dict]:
    return _run(request, "hourly")


@functions_framework.http
@endpoint("POST")
def run_daily_jobs(request: flask.Request) -> tuple[int, dict]:
    return _run(request, "daily")
