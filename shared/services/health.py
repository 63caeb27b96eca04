"""Use case: the state of every backend, probed in the background so /health never waits on one.

Each probe is a cheap real call (a read of a key that does not exist, `SELECT 1`, a listing) with a
time limit; the answers are kept with when they were taken. A /health call returns the last
answers at once and, when they are older than `interval_s`, starts the next round in the
background. It never waits, not even for the first round: a backend not answered yet is
"unknown". An instance that can, starts the first round as it starts (`start`).
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as ProbeTimeout
from typing import Any

log = logging.getLogger(__name__)

# A probe makes one real call and returns details (a dict, whose "status" may say "degraded") or
# None; raising means the backend failed. A disabled backend has the reason instead of a probe.
Probe = Callable[[], object]


class HealthMonitor:
    def __init__(
        self,
        probes: Mapping[str, Probe | str],
        interval_s: float = 30.0,
        timeout_s: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.probes = probes  # name -> probe, or the reason the backend is disabled
        self.interval_s = interval_s
        self.timeout_s = timeout_s
        self.clock = clock
        # Each answer as it comes; a disabled backend's is known from the start.
        self._results: dict[str, dict[str, Any]] = {
            name: {"status": "disabled", "reason": probe} for name, probe in probes.items() if isinstance(probe, str)
        }
        self._answered: set[str] = set()
        self._round_id = 0
        self._checked = float("-inf")
        self._round = threading.Lock()
        self._write = threading.Lock()  # an answer and its round's "no answer" never cross
        self.checked = threading.Event()  # set when the first round is over (answered or timed out)
        self._pool = ThreadPoolExecutor(max_workers=len(probes) or 1, thread_name_prefix="health")

    def report(self, live: Mapping[str, dict[str, Any]] | None = None) -> dict[str, dict[str, Any]]:
        """The last known state of each backend (probing again in the background when due), merged
        with `live` states that cost no I/O (counters, queues); the worse status wins. Never waits."""
        self.start()
        unknown = {"status": "unknown", "reason": "first check still running"}
        report = {name: self._results.get(name, unknown) for name in self.probes}
        for name, state in (live or {}).items():
            probed = report.get(name, {"status": "healthy"})
            report[name] = probed | state | {"status": worst(probed["status"], *_statuses(state))}
        return report

    def start(self) -> None:
        """Start a round of probes in the background if one is due and none is running."""
        if self.clock() - self._checked >= self.interval_s and self._round.acquire(blocking=False):
            threading.Thread(target=self._check_all, name="health-round", daemon=True).start()

    def _check_all(self) -> None:
        try:
            self._round_id += 1
            futures = {}
            for name, probe in self.probes.items():
                if callable(probe):
                    futures[name] = self._pool.submit(self._timed, probe)
                    futures[name].add_done_callback(functools.partial(self._answer, name, self._round_id))
            deadline = time.monotonic() + self.timeout_s
            for name, future in futures.items():
                try:
                    future.result(timeout=max(0.0, deadline - time.monotonic()))
                except ProbeTimeout:
                    with self._write:
                        if not future.done():  # else its answer is in
                            # A backend that never answered yet may still be opening (a cold instance).
                            status = "degraded" if name in self._answered else "unknown"
                            reason = f"no answer within {self.timeout_s:g} s"
                            self._results = self._results | {name: {"status": status, "reason": reason}}
            self._checked = self.clock()
            self.checked.set()
        finally:
            self._round.release()

    def _answer(self, name: str, round_id: int, future: Future) -> None:
        """A probe's answer, kept as it comes: a late one replaces its round's "no answer"."""
        with self._write:
            if round_id == self._round_id and not future.cancelled():
                self._results = self._results | {name: future.result()}
                self._answered.add(name)

    @staticmethod
    def _timed(probe: Probe) -> dict[str, Any]:
        started = time.perf_counter()
        try:
            details = probe()
        except Exception as exc:  # any failure is the backend's state, reported, never raised
            log.warning("health probe failed", extra={"error": str(exc)[:300]})
            return {"status": "degraded", "reason": f"{type(exc).__name__}: {str(exc)[:200]}"}
        latency = {"probe_ms": round((time.perf_counter() - started) * 1000, 2)}
        return {"status": "healthy"} | (details if isinstance(details, dict) else {}) | latency


def _statuses(state: dict[str, Any]) -> list[str]:
    """A state's own status and those of its parts (e.g. the bus's publisher)."""
    return [state.get("status", "healthy")] + [
        v["status"] for v in state.values() if isinstance(v, dict) and "status" in v
    ]


def worst(*statuses: str) -> str:
    order = ("healthy", "disabled", "unknown", "degraded", "unhealthy")
    return max(statuses, key=order.index)
