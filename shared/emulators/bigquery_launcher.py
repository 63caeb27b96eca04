"""Offline launcher for bqemulator 1.4.0. Run with the emulator venv's python:

    python launch_bqemu.py start --rest-port P --grpc-port Q --project X

Accepts any `bqemulator` CLI args; binds 127.0.0.1 by default; data is in-memory.
"""

import contextlib
import os
import sys

os.environ.setdefault("BQEMU_ENABLE_FORMAT_EXTENSIONS", "false")  # no avro download
os.environ.setdefault("BQEMU_REST_HOST", "127.0.0.1")
os.environ.setdefault("BQEMU_GRPC_HOST", "127.0.0.1")

import bqemulator.server as server
from bqemulator.api.routes import upload
from bqemulator.cli import main
from bqemulator.storage.engine import DuckDBEngine


def _load_spatial_best_effort(self):
    # Upstream runs INSTALL spatial (network download) and aborts startup on failure.
    # Only LOAD (works if already cached); without it just GEOGRAPHY/ST_* are unavailable.
    with contextlib.suppress(Exception):
        self._connection.execute("LOAD spatial")


DuckDBEngine._load_spatial = _load_spatial_best_effort

# google-cloud-bigquery sends the media part of multipart load uploads as "*/*".
upload._PERMITTED_MEDIA_CONTENT_TYPES += ("*/*",)

# After an unhandled error bqemulator has already sent its 500 JSON response, then
# re-raises; uvicorn then closes the keep-alive socket and the client's *next* call
# fails with ConnectionResetError. Swallow the re-raise to keep the connection usable.
_create_app = server.create_app


def _create_app_keepalive(ctx):
    app = _create_app(ctx)

    async def asgi(scope, receive, send):
        with contextlib.suppress(Exception):  # already logged and answered with a 500
            await app(scope, receive, send)

    return asgi


server.create_app = _create_app_keepalive

if __name__ == "__main__":
    sys.exit(main())
