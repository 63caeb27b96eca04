"""The requirements against the code: every third-party import is a declared dependency (not one
that another package happens to pull in), and every lock holds, with hashes, the pins it was made from.

`requirements*.in` are the direct pins people edit; `requirements*.txt` are the hashed locks made from
them (README, "The two commands"), which ./dev and a deployed function install.
"""

from __future__ import annotations

import ast
import importlib.metadata
import re
import sys
from collections import defaultdict
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CODE = ("shared", "functions", "tests", "bench")  # and main.py
FIRST_PARTY = {*CODE, "main", "__future__"}
RUNTIME, DEV = "requirements.in", "requirements-dev.in"


def requirements_of(file: str) -> str | None:
    """Which direct pins code may import from: what a deployed function installs, or the dev set
    for the emulators, the tests and the benchmarks, which never ship."""
    if file == "shared/emulators/bigquery_launcher.py":
        return None  # runs in the BigQuery emulator's own virtualenv, whose packages this one lacks
    if file.startswith(("shared/emulators/", "tests/", "bench/")):
        return DEV
    return RUNTIME


LOCKS = {  # direct pins -> the lock made from them
    "requirements.in": "requirements.txt",
    "requirements-dev.in": "requirements-dev.txt",
    "requirements-nodeps.in": "requirements-nodeps.txt",
    "requirements-bqemulator.in": "requirements-bqemulator.txt",
    "requirements-checkov.in": "requirements-checkov.txt",
}
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?==([^\s;\\]+)")


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pins(path: Path, includes: bool = True) -> dict[str, str]:
    """{canonical name: version} of a requirements file, following its `-r` includes unless told not to."""
    found: dict[str, str] = {}
    for line in path.read_text().splitlines():
        line = line.split(" #")[0].strip()
        if line.startswith("-r ") and includes:
            found.update(pins(path.parent / line[3:].strip()))
        elif match := PIN.match(line):
            found[canonical(match[1])] = match[2]
    return found


def module_owners() -> dict[str, set[str]]:
    """{dotted module: canonical names of the installed distributions whose files make it}, from
    their RECORDs: yaml -> PyYAML, Stemmer -> PyStemmer, google.cloud.storage -> google-cloud-storage."""
    owners: dict[str, set[str]] = defaultdict(set)
    for dist in importlib.metadata.distributions():
        for file in dist.files or ():
            parts = file.parts
            if not parts or not parts[-1].endswith((".py", ".so", ".pyd")) or ".." in parts:
                continue
            stem = parts[-1].split(".")[0]
            module = parts[:-1] if stem == "__init__" else (*parts[:-1], stem)
            if module and all(part.isidentifier() for part in module):
                owners[".".join(module)].add(canonical(dist.metadata["Name"]))
    return owners


def imports(path: Path) -> set[str]:
    """Every absolute module a file imports, anywhere in it; `from a import b` counts as a.b (b may be
    a module of the namespace package a, as in `from google.cloud import storage`)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return {name for name in found if name.split(".")[0] not in FIRST_PARTY | set(sys.stdlib_module_names)}


def imported(requirements: str) -> dict[str, set[str]]:
    """{module (its distributions): files importing it} for the code that installs `requirements`."""
    owners = module_owners()
    files = [ROOT / "main.py", *(file for top in CODE for file in sorted((ROOT / top).rglob("*.py")))]
    found: dict[str, set[str]] = defaultdict(set)
    for file in files:
        if requirements_of(str(file.relative_to(ROOT))) == requirements:
            for name in imports(file):
                parts = name.split(".")
                module = next((m for m in (".".join(parts[:n]) for n in range(len(parts), 0, -1)) if m in owners), name)
                found[f"{module} ({'/'.join(sorted(owners.get(module, {'not installed'})))})"].add(file.name)
    return found


def distributions(module: str) -> set[str]:
    return set(module.split("(")[1].rstrip(")").split("/"))


@pytest.mark.parametrize("requirements", [RUNTIME, DEV])
def test_every_third_party_import_is_a_direct_requirement(requirements):
    listed = set(pins(ROOT / requirements))
    undeclared = {
        module: files for module, files in imported(requirements).items() if not distributions(module) & listed
    }
    assert not undeclared, f"imported but not pinned in {requirements}: {undeclared}"


def test_a_runtime_pin_nothing_imports_says_why_it_ships():
    used = set().union(*map(distributions, imported(RUNTIME)))
    unexplained = [
        line
        for line in (ROOT / RUNTIME).read_text().splitlines()
        if (match := PIN.match(line)) and canonical(match[1]) not in used and "#" not in line
    ]
    assert not unexplained, f"pinned in {RUNTIME}, never imported, no reason given: {unexplained}"


@pytest.mark.parametrize(("direct", "lock"), LOCKS.items())
def test_each_lock_pins_what_its_requirements_pin_each_with_hashes(direct, lock):
    wanted, locked = pins(ROOT / direct), pins(ROOT / lock)
    assert {name: locked.get(name) for name in wanted} == wanted, f"{lock} is stale: regenerate it (README)"
    text = (ROOT / lock).read_text()
    # A pin (its extras may hold spaces: "graphiti-core[falkordb, kuzu]"), a marker maybe, then its hashes.
    hashed = re.findall(
        r"^[^\s\[]+(?:\[[^\]]*\])?==\S+(?: ;[^\\\n]*)? \\\n(?:\s+--hash=sha256:[0-9a-f]{64}(?: \\)?\n)+", text, re.M
    )
    requirements = [line for line in text.splitlines() if PIN.match(line)]  # a name may repeat, per platform
    assert len(hashed) == len(requirements), f"{lock}: {len(requirements) - len(hashed)} pins without hashes"


def test_the_dev_lock_alone_holds_the_versions_that_ship():
    runtime, dev = pins(ROOT / "requirements.txt"), pins(ROOT / "requirements-dev.txt", includes=False)
    assert set(runtime) <= set(dev)
    assert {name: dev[name] for name in runtime} == runtime
