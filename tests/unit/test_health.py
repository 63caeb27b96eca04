"""The health monitor: probes run in the background with a time limit, answers are cached, a
failure or a hang is reported with its reason, a late first answer replaces "unknown", and no
call waits for a probe, not even the first."""

from __future__ import annotations

import threading
import time

from shared.services.health import HealthMonitor, worst


def test_failures_hangs_and_disabled_backends_are_reported_with_their_reason():
    release = threading.Event()
    calls = {"ok": 0}

    def ok() -> dict:
        calls["ok"] += 1
        return {"rows": 1}

    def broken() -> None:
        raise ConnectionError("refused")

    monitor = HealthMonitor(
        {"ok": ok, "broken": broken, "hung": lambda: release.wait(5), "off": "not configured"},
        interval_s=60,
        timeout_s=0.2,
    )
    monitor.start()
    assert monitor.checked.wait(2)
    report = monitor.report()
    assert report["ok"]["status"] == "healthy" and report["ok"]["rows"] == 1
    assert report["broken"] == {"status": "degraded", "reason": "ConnectionError: refused"}
    assert report["hung"] == {"status": "unknown", "reason": "no answer within 0.2 s"}  # never answered yet
    assert report["off"] == {"status": "disabled", "reason": "not configured"}
    release.set()
    time.sleep(0.1)
    assert monitor.report()["hung"]["status"] == "healthy"  # its late answer replaced "unknown"
    assert calls["ok"] == 1  # cached: no second round within the interval


def test_a_new_round_runs_in_the_background_when_the_answers_are_old():
    now = [0.0]
    state = {"up": True}

    def probe() -> None:
        if not state["up"]:
            raise TimeoutError("slow")

    monitor = HealthMonitor({"store": probe}, interval_s=30, timeout_s=1, clock=lambda: now[0])
    monitor.start()
    assert monitor.checked.wait(2) and monitor.report()["store"]["status"] == "healthy"
    state["up"] = False
    now[0] = 31.0
    monitor.report()  # starts the next round, answers with what it knows
    deadline = time.monotonic() + 2
    while monitor.report()["store"]["status"] == "healthy":
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert monitor.report()["store"]["reason"] == "TimeoutError: slow"


def test_live_states_merge_and_the_worse_status_wins():
    monitor = HealthMonitor({"bus": lambda: {"kind": "Bus"}}, timeout_s=1)
    monitor.start()
    assert monitor.checked.wait(2)
    merged = monitor.report({"bus": {"status": "healthy", "publisher": {"status": "degraded", "spooled": 3}}})
    assert merged["bus"]["status"] == "degraded" and merged["bus"]["publisher"]["spooled"] == 3
    assert worst("healthy", "disabled") == "disabled" and worst("unknown", "degraded") == "degraded"


def test_the_first_report_does_not_wait_for_the_first_round():
    """A cold instance's first /health used to wait for its probes (1.1 to 2 s opening Kuzu)."""
    release = threading.Event()
    monitor = HealthMonitor({"slow": lambda: release.wait(5), "off": "not configured"}, timeout_s=2)
    started = time.perf_counter()
    report = monitor.report()  # starts the first round, answers at once
    elapsed = time.perf_counter() - started
    release.set()
    assert elapsed < 0.5, f"waited {elapsed:.2f} s for the probes"
    assert report["slow"] == {"status": "unknown", "reason": "first check still running"}
    assert monitor.checked.wait(2) and monitor.report()["slow"]["status"] == "healthy"
