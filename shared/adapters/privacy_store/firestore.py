"""Privacy records in Google Cloud Firestore, shared by every instance.

Collections (names behind `settings.privacy_collection_prefix`):
    settings    one document per shopper (document_id(user_id)): {"user_id", "settings", "updated_at"}
    deletions   one document per request (its id): {"user_id", "status", "requested_at", "request"}
    tombstones  one document per deleted shopper (tombstone_key(user_id)): {"requested_at"}
    nonces      one document per used token (sha256 of the nonce): {"expires_at", "claim"}
"""

from __future__ import annotations

import hashlib
import uuid
from datetime import UTC, datetime
from typing import Any, TypeVar

from google.api_core import exceptions
from google.cloud import firestore

from shared.adapters.profile_store.firestore import contention_retry, document_id
from shared.adapters.profile_store.locks import StripedLocks
from shared.config import Settings
from shared.domain.privacy import DeletionRequest, PrivacySettings, tombstone_key
from shared.ports.privacy_store import PrivacyStore

T = TypeVar("T")


def utc(at: datetime) -> datetime:
    """A plain aware UTC datetime (naive times are taken to be UTC already; Firestore's own
    timestamp subclass becomes a plain datetime)."""
    at = at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)
    return datetime.combine(at.date(), at.time(), UTC)


def decode_request(data: dict[str, Any]) -> DeletionRequest:
    return DeletionRequest.model_validate(data["request"])


def encode_request(request: DeletionRequest) -> dict[str, Any]:
    # status and requested_at are copied out as fields for the queries (requested_at as a
    # Firestore timestamp, which orders by time; the JSON text would not).
    return {
        "user_id": request.user_id,
        "status": request.status,
        "requested_at": utc(request.requested_at),
        "request": request.model_dump(mode="json"),
    }


class FirestorePrivacyStore(PrivacyStore):
    """Settings and requests are plain document writes; a deletion request and its tombstone are
    written in one transaction, and nonces are claimed with create-if-absent."""

    def __init__(
        self,
        client: firestore.Client,
        prefix: str = "privacy_",
        contention_timeout_s: float = 30.0,
        read_timeout_s: float = 2.0,
    ) -> None:
        self.client = client
        self.contention_timeout_s = contention_timeout_s
        self._retry = contention_retry(contention_timeout_s)
        # The request path reads settings and tombstones (once per shopper per cache period): one
        # attempt, long enough for a cold channel, then the caller's last known state
        # (shared.services.privacy) rather than a request held up by the client's retries.
        self.read_timeout_s = read_timeout_s
        self._settings = client.collection(prefix + "settings")
        self._deletions = client.collection(prefix + "deletions")
        self._tombstones = client.collection(prefix + "tombstones")
        # Production: a TTL policy on this collection's `expires_at` field lets Firestore purge
        # expired claims (gcloud firestore fields ttls update expires_at --collection-group=...).
        self._nonces = client.collection(prefix + "nonces")
        self._lock = StripedLocks()  # an instance's threads queue here rather than contend in Firestore

    @classmethod
    def from_settings(cls, settings: Settings) -> FirestorePrivacyStore:
        client = firestore.Client(project=settings.firestore_project, database=settings.firestore_database)
        return cls(client, settings.privacy_collection_prefix)

    def settings(self, user_id: str) -> PrivacySettings | None:
        snapshot = self._settings.document(document_id(user_id)).get(retry=None, timeout=self.read_timeout_s)
        return PrivacySettings.model_validate(snapshot.get("settings")) if snapshot.exists else None

    def save_settings(self, user_id: str, settings: PrivacySettings) -> None:
        self._settings.document(document_id(user_id)).set(
            {"user_id": user_id, "settings": settings.model_dump(mode="json"), "updated_at": firestore.SERVER_TIMESTAMP}
        )

    def forget_settings(self, user_id: str) -> None:
        self._settings.document(document_id(user_id)).delete()

    def record_deletion(self, request: DeletionRequest) -> DeletionRequest:
        tombstone = self._tombstones.document(tombstone_key(request.user_id))
        # Equality filters only: served by merging the single-field indexes, no composite index.
        unfinished = (
            self._deletions.where(filter=firestore.FieldFilter("user_id", "==", request.user_id))
            .where(filter=firestore.FieldFilter("status", "==", "pending"))
            .limit(1)
        )
        requested_at = utc(request.requested_at)

        @firestore.transactional
        def attempt(transaction: firestore.Transaction) -> DeletionRequest:
            # Every call reads and writes the tombstone, so calls for one shopper conflict there
            # and run one after the other (the loser retries and finds the winner's request).
            previous = tombstone.get(transaction=transaction)
            existing = list(transaction.get(unfinished))
            if not previous.exists or previous.get("requested_at") < requested_at:
                transaction.set(tombstone, {"requested_at": requested_at})
            if existing:
                return decode_request(existing[0].to_dict() or {})
            transaction.set(self._deletions.document(document_id(request.request_id)), encode_request(request))
            return request

        with self._lock(request.user_id):
            return self._retry(lambda: attempt(self.client.transaction(max_attempts=5)))()

    def deletion(self, request_id: str) -> DeletionRequest | None:
        snapshot = self._deletions.document(document_id(request_id)).get()
        return decode_request(snapshot.to_dict() or {}) if snapshot.exists else None

    def save_deletion(self, request: DeletionRequest) -> None:
        self._deletions.document(document_id(request.request_id)).set(encode_request(request))

    def pending_deletions(self, limit: int = 100) -> list[DeletionRequest]:
        # Production needs a composite index: status ASC, requested_at ASC (the emulator needs none).
        query = (
            self._deletions.where(filter=firestore.FieldFilter("status", "==", "pending"))
            .order_by("requested_at")
            .limit(limit)
        )
        return [decode_request(snapshot.to_dict() or {}) for snapshot in query.stream()]

    def deleted_at(self, user_id: str) -> datetime | None:
        snapshot = self._tombstones.document(tombstone_key(user_id)).get(retry=None, timeout=self.read_timeout_s)
        return utc(snapshot.get("requested_at")) if snapshot.exists else None

    def retention_overrides(self, below: int) -> dict[str, int]:
        # One range filter on one (nested) field: its automatic single-field index serves it.
        query = self._settings.where(filter=firestore.FieldFilter("settings.data_retention_days", "<", below)).select(
            ["user_id", "settings.data_retention_days"]
        )
        return {
            snapshot.get("user_id"): int(snapshot.get("settings.data_retention_days")) for snapshot in query.stream()
        }

    def claim_nonce(self, nonce: str, expires_at: datetime) -> bool:
        # Hashed: any nonce makes a valid document id. The claim id tells our own create, retried
        # by the client after a lost response, from an earlier claim.
        ref = self._nonces.document(hashlib.sha256(nonce.encode()).hexdigest())
        claim = uuid.uuid4().hex
        try:
            ref.create({"expires_at": utc(expires_at), "claim": claim})
        except exceptions.AlreadyExists:
            snapshot = ref.get()
            return bool(snapshot.exists and snapshot.get("claim") == claim)
        return True
