"""Profiles in Google Cloud Firestore, one document per shopper, updated in transactions."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from google.api_core import exceptions
from google.api_core.retry import Retry
from google.cloud import firestore

from shared.adapters.profile_store.locks import StripedLocks
from shared.config import Settings
from shared.domain.profile import Profile
from shared.ports.profile_store import ProfileCodec, ProfileStore

T = TypeVar("T")


def document_id(user_id: str) -> str:
    """The user id, unless Firestore reserves it ("." / ".." / "__x__"); those are hex-encoded
    behind "~", which user ids cannot contain, so the mapping stays one-to-one."""
    reserved = user_id in (".", "..") or (user_id.startswith("__") and user_id.endswith("__"))
    return "~" + user_id.encode().hex() if reserved else user_id


def aborted(exc: Exception) -> bool:
    """A transaction contention aborted: the client's own attempts exhausted (a ValueError) or one."""
    return isinstance(exc, exceptions.Aborted) or (
        isinstance(exc, ValueError) and isinstance(exc.__cause__, exceptions.Aborted)
    )


def contention_retry(timeout_s: float) -> Retry:
    """Transactions aborted by contention, run again after a jittered pause (up to 5 ms, doubling to
    0.5 s) for `timeout_s` (then RetryError): the client retries only aborted commits and without
    pause, which livelocks busy documents."""
    return Retry(predicate=aborted, initial=0.005, maximum=0.5, multiplier=2, timeout=timeout_s)


class FirestoreProfileStore(ProfileStore):
    """Each update is a Firestore transaction (read, change, write; retried by the client on
    contention), so instances updating one shopper at once never lose each other's events."""

    def __init__(
        self,
        client: firestore.Client,
        codec: ProfileCodec,
        collection: str = "profiles",
        contention_timeout_s: float = 30.0,
        read_timeout_s: float = 0.2,
        reachability_timeout_s: float = 2.0,
    ) -> None:
        self.client = client
        self.reachability_timeout_s = reachability_timeout_s
        self.read_timeout_s = read_timeout_s
        self.contention_timeout_s = contention_timeout_s
        self._retry = contention_retry(contention_timeout_s)
        self.codec = codec
        self.collection = client.collection(collection)
        # Threads of one instance queue for a shopper here instead of contending in Firestore,
        # where each conflict costs a lock timeout (about 2 s on the emulator).
        self._lock = StripedLocks()

    @classmethod
    def from_settings(cls, settings: Settings, codec: ProfileCodec) -> FirestoreProfileStore:
        client = firestore.Client(project=settings.firestore_project, database=settings.firestore_database)
        return cls(client, codec, settings.firestore_collection, read_timeout_s=settings.profile_read_timeout_s)

    def update(self, user_id: str, change: Callable[[Profile], T]) -> T:
        ref = self.collection.document(document_id(user_id))

        @firestore.transactional
        def attempt(transaction: firestore.Transaction) -> T:
            snapshot = ref.get(transaction=transaction)
            data: dict[str, Any] = (snapshot.to_dict() or {}) if snapshot.exists else {}
            profile = self.codec.decode(user_id, data["doc"]) if data else Profile(user_id)
            result = change(profile)
            transaction.set(
                ref,
                {
                    "user_id": user_id,
                    "doc": self.codec.encode(profile),
                    "version": data.get("version", 0) + 1,
                    "updated_at": firestore.SERVER_TIMESTAMP,
                },
            )
            return result

        with self._lock(user_id):
            # The client gives transactions no timeout (begin/commit retry for about a minute when
            # Firestore is unreachable); one bounded read first makes an outage fail fast, so the
            # caller can spool the events instead of hanging.
            ref.get(retry=None, timeout=self.reachability_timeout_s)
            return self._retry(lambda: attempt(self.client.transaction(max_attempts=5)))()

    def read(self, user_id: str, view: Callable[[Profile], T]) -> T | None:
        # Reads serve requests: one attempt, bounded, so a slow Firestore cannot hold a search.
        snapshot = self.collection.document(document_id(user_id)).get(retry=None, timeout=self.read_timeout_s)
        if not snapshot.exists:
            return None
        return view(self.codec.decode(user_id, snapshot.get("doc")))

    def delete(self, user_id: str) -> bool:
        ref = self.collection.document(document_id(user_id))
        existed = ref.get().exists
        ref.delete()
        return existed
