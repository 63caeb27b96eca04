"""Run `python -m shared.cli serve` as its own process for end-to-end tests."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from tests.conftest import ROOT


@contextmanager
def serving(env: dict[str, str], crash: bool = False) -> Iterator[str]:
    """`python -m shared.cli serve --port 0` in its own process group; yields its URL. It is
    stopped with SIGTERM (graceful), or with `crash` killed outright (SIGKILL, every process)."""
    process = subprocess.Popen(
        [sys.executable, "-m", "shared.cli", "serve", "--port", "0"],
        cwd=ROOT,
        env=os.environ | env,
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
                threading.Thread(target=process.stdout.read, daemon=True).start()
                yield match.group(1)
                break
        else:
            pytest.fail(f"server exited with {process.wait()} before listening")
    finally:
        os.killpg(process.pid, signal.SIGKILL if crash else signal.SIGTERM)
        process.wait(timeout=30)
