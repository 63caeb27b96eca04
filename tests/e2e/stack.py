"""Run `python -m shared.cli serve` as its own process for end-to-end tests."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TextIO

import pytest

from tests.conftest import ROOT


@contextmanager
def serving(env: dict[str, str], crash: bool = False, log: Path | None = None) -> Iterator[str]:
    """`python -m shared.cli serve --port 0` in its own process group; yields its URL. It is
    stopped with SIGTERM (graceful), or with `crash` killed outright (SIGKILL, every process).
    Its output goes to `log` when given (read it when a test fails)."""
    # A catalog store of its own unless given: the catalog it seeds (file or demo) is the test's.
    scratch = tempfile.mkdtemp()
    store = {"LEAFLOAF_CATALOG_STORE_PATH": str(Path(scratch) / "catalog.sqlite3")}
    process = subprocess.Popen(
        [sys.executable, "-m", "shared.cli", "serve", "--port", "0"],
        cwd=ROOT,
        env=os.environ | store | env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        for line in process.stdout:
            if match := re.search(r"on (http://127\.0\.0\.1:\d+)", line):
                # Keep reading its output: a full pipe would block the server's logging, and with it
                # every thread that logs (as happened under injected faults).
                threading.Thread(target=_drain, args=(process.stdout, log), daemon=True).start()
                yield match.group(1)
                break
        else:
            pytest.fail(f"server exited with {process.wait()} before listening")
    finally:
        os.killpg(process.pid, signal.SIGKILL if crash else signal.SIGTERM)
        process.wait(timeout=30)
        shutil.rmtree(scratch, ignore_errors=True)


def _drain(output: TextIO, log: Path | None) -> None:
    if log is None:
        output.read()
        return
    with log.open("a") as sink:
        for line in output:
            sink.write(line)
            sink.flush()
