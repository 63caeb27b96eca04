"""The archive in a Cloud Storage bucket (create-if-absent through generation preconditions)."""

from __future__ import annotations

import contextlib
import os

from google.api_core import exceptions as google_exceptions
from google.auth.credentials import AnonymousCredentials
from google.cloud import storage

from shared.config import Settings
from shared.ports.archive import Archive, ArchiveUnavailable, StoredObject

TRANSIENT = (google_exceptions.ServerError, google_exceptions.TooManyRequests, google_exceptions.RetryError, OSError)


class GcsArchive(Archive):
    def __init__(self, client: storage.Client, bucket: str, timeout_s: float = 30.0) -> None:
        self.client = client
        self.bucket = client.bucket(bucket)
        self.timeout_s = timeout_s
        # Retry transient errors within the delivery's time; a down store fails fast, the bus redelivers.
        self.retry = storage.retry.DEFAULT_RETRY.with_deadline(timeout_s)

    @classmethod
    def from_settings(cls, settings: Settings) -> GcsArchive:
        if os.environ.get("STORAGE_EMULATOR_HOST"):  # an emulator: no credentials
            client = storage.Client(project=settings.pubsub_project, credentials=AnonymousCredentials())
        else:
            client = storage.Client()
        return cls(client, settings.archive_bucket)

    def prepare(self) -> None:
        with contextlib.suppress(google_exceptions.Conflict):
            self.client.create_bucket(self.bucket.name, timeout=self.timeout_s)

    def put(self, name: str, data: bytes, if_absent: bool = False) -> bool:
        blob = self.bucket.blob(name)
        try:
            blob.upload_from_string(
                data,
                content_type="application/x-ndjson" if name.endswith(".jsonl") else "application/octet-stream",
                if_generation_match=0 if if_absent else None,
                timeout=self.timeout_s,
                retry=self.retry if if_absent else None,  # only a conditional write is safe to retry
            )
        except google_exceptions.PreconditionFailed:
            return False
        except TRANSIENT as exc:
            raise ArchiveUnavailable(f"cannot write gs://{self.bucket.name}/{name}: {exc}") from exc
        return True

    def get(self, name: str) -> bytes | None:
        try:
            return bytes(self.bucket.blob(name).download_as_bytes(timeout=self.timeout_s, retry=self.retry))
        except google_exceptions.NotFound:
            return None
        except TRANSIENT as exc:
            raise ArchiveUnavailable(f"cannot read gs://{self.bucket.name}/{name}: {exc}") from exc

    def list(self, prefix: str) -> list[StoredObject]:
        try:
            blobs = self.client.list_blobs(self.bucket, prefix=prefix, timeout=self.timeout_s, retry=self.retry)
            found = [StoredObject(b.name, int(b.size or 0), b.time_created.timestamp()) for b in blobs]
        except TRANSIENT as exc:
            raise ArchiveUnavailable(f"cannot list gs://{self.bucket.name}/{prefix}: {exc}") from exc
        return sorted(found, key=lambda o: o.name)

    def delete(self, name: str) -> None:
        try:
            self.bucket.blob(name).delete(timeout=self.timeout_s, retry=self.retry)
        except google_exceptions.NotFound:
            pass
        except TRANSIENT as exc:
            raise ArchiveUnavailable(f"cannot delete gs://{self.bucket.name}/{name}: {exc}") from exc
