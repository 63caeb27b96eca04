"""Terraform against the code: one source of truth (shared/deployment.py), and a static security
scan (checkov, in its own virtualenv) with only the findings infra/.checkov.yaml accepts."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import functions_framework._function_registry as registry
import hcl2
import pytest

import main
from shared.deployment import FUNCTIONS, TFVARS, render
from shared.domain.pipeline import DEAD_LETTER_TOPIC, EVENT_TABLES, TOPIC
from tests.conftest import ROOT

INFRA = ROOT / "infra"
CHECKOV = ROOT / ".venv-checkov" / "bin" / "checkov"
SIGNATURE = {"http": "http", "schedule": "http", "pubsub": "cloudevent"}


def unquote(value: Any) -> Any:
    """python-hcl2 keeps labels and literal strings quoted: '"name"' -> 'name'."""
    if isinstance(value, dict):
        return {unquote(k): unquote(v) for k, v in value.items() if k != "__comments__"}
    if isinstance(value, list):
        return [unquote(v) for v in value]
    if isinstance(value, str) and len(value) > 1 and value[0] == value[-1] == '"':
        return value[1:-1]
    return value


@pytest.fixture(scope="module")
def terraform() -> dict[str, Any]:
    """Every block of infra/*.tf: {"resource": {type: {name: body}}, "locals": {...}, "variable": {...}}."""
    merged: dict[str, Any] = {"resource": {}, "locals": {}, "variable": {}, "output": {}}
    for path in sorted(INFRA.glob("*.tf")):
        with path.open() as file:
            parsed = unquote(hcl2.load(file))
        for block in parsed.get("resource", []):
            for kind, named in block.items():
                merged["resource"].setdefault(kind, {}).update(named)
        for block in parsed.get("locals", []):
            merged["locals"].update(block)
        for block in parsed.get("variable", []):
            merged["variable"].update(block)
    return merged


def test_the_generated_variables_are_up_to_date():
    assert TFVARS.read_text() == render(), "run: python -m shared.deployment"


def test_every_entry_point_is_deployed_with_its_trigger():
    assert set(main.__all__) == set(FUNCTIONS), "a function without a deployment, or a deployment without a function"
    for name, function in FUNCTIONS.items():
        assert registry.REGISTRY_MAP[name] == SIGNATURE[function.trigger], name
        assert (function.trigger == "schedule") == bool(function.schedule), name
    public = {name for name, f in FUNCTIONS.items() if f.public}
    assert public <= {name for name, f in FUNCTIONS.items() if f.trigger == "http"}  # nothing else faces browsers


def test_terraform_deploys_what_the_code_defines(terraform):
    resources, local = terraform["resource"], terraform["locals"]
    function = resources["google_cloudfunctions2_function"]["function"]
    assert function["for_each"] == "${var.functions}"
    assert function["build_config"][0]["entry_point"] == "${each.key}"
    assert "${google_storage_bucket_object.source.name}" in str(function["build_config"])
    assert resources["google_storage_bucket_object"]["source"]["name"].startswith(
        "source-${data.archive_file.source.output_md5}"
    )  # the archive is named by its hash: a code change redeploys
    assert resources["google_service_account"]["function"]["for_each"] == "${var.functions}"
    assert resources["google_pubsub_subscription"]["push"]["for_each"] == "${local.pubsub_functions}"
    assert resources["google_cloud_scheduler_job"]["jobs"]["for_each"] == "${local.schedule_functions}"
    assert resources["google_cloud_run_service_iam_member"]["public"]["for_each"] == "${local.public_functions}"
    for kind in ("http", "pubsub", "schedule"):
        assert f'f.trigger == "{kind}"' in local[f"{kind}_functions"]
    push = resources["google_pubsub_subscription"]["push"]
    assert push["dead_letter_policy"][0]["max_delivery_attempts"] == 5 and push["retry_policy"]

    tables = resources["google_bigquery_table"]["events"]
    assert tables["for_each"] == "${var.bigquery_tables}" and tables["schema"] == "${each.value.schema}"
    assert tables["time_partitioning"][0]["field"] == "${each.value.partition_field}"
    assert tables["clustering"] == "${each.value.clustering}"
    assert resources["google_pubsub_topic"]["events"]["name"] == "${var.events_topic}"
    assert resources["google_pubsub_topic"]["dead_letter"]["name"] == "${var.dead_letter_topic}"
    assert resources["google_spanner_database"]["memory"]["ddl"] == "${var.spanner_ddl}"


def test_the_generated_tables_and_topics_match_the_code():
    import json

    generated = json.loads(TFVARS.read_text())
    assert (generated["events_topic"], generated["dead_letter_topic"]) == (TOPIC, DEAD_LETTER_TOPIC)
    for table in EVENT_TABLES:
        deployed = generated["bigquery_tables"][table.name]
        columns = [(c["name"], c["type"], c["mode"]) for c in json.loads(deployed["schema"])]
        assert columns == [(c.name, c.type, c.mode) for c in table.columns], table.name
        assert deployed["partition_field"] == table.partition_field
        assert deployed["clustering"] == list(table.clustering)


def test_every_role_grant_names_a_deployed_function(terraform):
    """A renamed function must not silently lose (or keep) its permissions."""
    for name, value in terraform["locals"].items():
        if isinstance(value, str) and value.startswith("${toset(["):
            granted = {item.strip(' "') for item in value.removeprefix("${toset([").removesuffix("])}").split(",")}
            assert granted <= set(FUNCTIONS), f"local.{name} names {sorted(granted - set(FUNCTIONS))}"


def test_the_security_scan_passes_with_only_the_accepted_findings():
    if not CHECKOV.exists():
        pytest.fail(f"{CHECKOV} is missing: ./dev test installs it (requirements-checkov.txt)")
    config = INFRA / ".checkov.yaml"
    result = subprocess.run(
        [str(CHECKOV), "-d", str(INFRA), "--config-file", str(config)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "Failed checks: 0" in result.stdout
    reasons = Path(config).read_text()
    for line in reasons.splitlines():
        if line.strip().startswith("- CKV_"):
            check = line.strip()[2:]
            assert reasons.index(f"{check}") < reasons.index(line), f"{check} is skipped without a reason above it"


def shipped(terraform_excludes: list[str]) -> list[Path]:
    """The Python files the source archive holds: everything under the repository but what it excludes."""
    excluded = [ROOT / name for name in terraform_excludes]
    return [
        path
        for path in ROOT.rglob("*.py")
        if not any(path.is_relative_to(e) for e in excluded) and "__pycache__" not in path.parts
    ]


@pytest.fixture(scope="module")
def excludes() -> list[str]:
    """What the source archive (data.archive_file.source) leaves out."""
    with (INFRA / "main.tf").open() as file:
        [source] = [b["archive_file"]["source"] for b in unquote(hcl2.load(file))["data"] if "archive_file" in b]
    return source["excludes"]


def test_the_source_archive_leaves_out_the_emulators_and_ships_all_the_functions_import(excludes):
    assert "shared/emulators" in excludes  # test and local tooling: never deployed
    files = {path.relative_to(ROOT).as_posix() for path in shipped(excludes)}
    assert not any(name.startswith("shared/emulators/") for name in files)
    # Every module the deployed functions can import (the entry points' imports, followed through,
    # and the adapters bootstrap imports by name) is in the archive.
    import grimp

    from shared import bootstrap

    graph = grimp.build_graph("shared", "functions")
    by_name = [vars(bootstrap)[name] for name in vars(bootstrap) if name.endswith("_CLASS_FOR_TYPE")]
    roots = sorted(graph.find_children("functions")) + [p.rpartition(".")[0] for r in by_name for p in r.values()]
    reachable = set(roots) | {m for root in roots for m in graph.find_upstream_modules(root)}
    for module in reachable:
        stem = module.replace(".", "/")
        assert f"{stem}.py" in files or f"{stem}/__init__.py" in files, f"{module} is imported but not deployed"


def test_every_python_file_deployed_is_type_checked(excludes):
    import tomllib

    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["mypy"]
    checked = [ROOT / name for name in config["files"]]
    unchecked = [p for p in shipped(excludes) if not any(p == c or p.is_relative_to(c) for c in checked)]
    assert [p.relative_to(ROOT).as_posix() for p in unchecked] == []
