"""Google's local emulators for the tests: started on free loopback ports, stopped by PID."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

SDK_CANDIDATES = ("/usr/lib/google-cloud-sdk", "/usr/share/google-cloud-sdk", "/opt/google-cloud-sdk")


class EmulatorMissing(RuntimeError):
    """Google's emulator is not installed here; the message says how to install it."""


def sdk_root() -> Path:
    """The Google Cloud SDK holding the emulators (CLOUDSDK_ROOT overrides the search)."""
    candidates = [os.environ.get("CLOUDSDK_ROOT", ""), *SDK_CANDIDATES]
    gcloud = shutil.which("gcloud")
    if gcloud:
        candidates.append(str(Path(gcloud).resolve().parents[1]))
    for candidate in candidates:
        if candidate and (Path(candidate) / "platform").is_dir():
            return Path(candidate)
    raise EmulatorMissing(
        "Google Cloud SDK not found: install it and run "
        "'gcloud components install cloud-firestore-emulator pubsub-emulator cloud-spanner-emulator', "
        "or set CLOUDSDK_ROOT"
    )


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for_port(port: int, process: subprocess.Popen, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"emulator exited with {process.returncode} before listening")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"emulator did not listen on port {port} within {timeout} s")


def stop(process: subprocess.Popen) -> None:
    """Stop the emulator's whole process group (its launcher script starts a JVM)."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
    with contextlib.suppress(ProcessLookupError):  # the JVM may outlive its launcher
        os.killpg(process.pid, signal.SIGKILL)


class FirestoreEmulator:
    """Google's Firestore emulator on 127.0.0.1:port; `reset` empties the default database."""

    def __init__(self, port: int | None = None) -> None:
        self.executable = sdk_root() / "platform" / "cloud-firestore-emulator" / "cloud_firestore_emulator"
        if not self.executable.exists():
            raise EmulatorMissing(
                f"{self.executable} is missing: run 'gcloud components install cloud-firestore-emulator'"
            )
        self.port = port or free_port()
        self.host = f"127.0.0.1:{self.port}"
        self.log_path = Path(tempfile.gettempdir()) / f"firestore-emulator-{self.port}.log"
        self.process: subprocess.Popen | None = None

    def start(self, import_data: Path | None = None) -> FirestoreEmulator:
        """Start (again, on the same port); `import_data` is an export's overall_export_metadata file."""
        command = [str(self.executable), "start", "--host=127.0.0.1", f"--port={self.port}"]
        if import_data is not None:
            command.append(f"--import-data={import_data}")
        with self.log_path.open("ab") as log:  # the child keeps its own handle
            self.process = subprocess.Popen(
                command,
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        wait_for_port(self.port, self.process)
        return self

    def stop(self) -> None:
        if self.process is not None:
            self.resume()  # a frozen process group does not act on SIGTERM
            stop(self.process)

    def pause(self) -> None:
        """Freeze the emulator (SIGSTOP): connections stay open, nothing answers."""
        assert self.process is not None
        os.killpg(self.process.pid, signal.SIGSTOP)

    def resume(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGCONT)

    def reset(self, project: str) -> None:
        self.reset_host(self.host, project)

    def export(self, project: str, directory: Path) -> Path:
        """Export the project's data (the emulator keeps data in memory only); returns the file
        to pass to `start(import_data=...)`."""
        directory.mkdir(parents=True, exist_ok=True)
        body = json.dumps({"database": f"projects/{project}/databases/(default)", "export_directory": str(directory)})
        url = f"http://{self.host}/emulator/v1/projects/{project}:export"
        request = urllib.request.Request(
            url, data=body.encode(), method="POST", headers={"Content-Type": "application/json"}
        )
        urllib.request.urlopen(request, timeout=30).read()
        return next(directory.glob("*/*.overall_export_metadata"))

    @staticmethod
    def reset_host(host: str, project: str) -> None:
        """Delete every document of the project's default database."""
        url = f"http://{host}/emulator/v1/projects/{project}/databases/(default)/documents"
        urllib.request.urlopen(urllib.request.Request(url, method="DELETE"), timeout=10).read()


@contextmanager
def firestore_emulator() -> Iterator[FirestoreEmulator]:
    emulator = FirestoreEmulator().start()
    try:
        yield emulator
    finally:
        emulator.stop()
