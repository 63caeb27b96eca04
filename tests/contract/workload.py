"""Deterministic events for the store contract tests, also run as a writer process:

    python -m tests.contract.workload <store> <target> <user> <start> <stop> <batch>

applies events [start, stop) of `user`, `batch` events per store transaction, and prints "done N";
with batch "cached", tracks them one by one through the instance cache (write-behind), as a server does.
"""

from __future__ import annotations

import os
import random
import sys
from datetime import UTC, datetime, timedelta

from shared.domain.catalog import Catalog
from shared.domain.engine import ProfileEngine
from shared.domain.events import Interaction
from shared.domain.rules import load_rules
from shared.ports.profile_store import ProfileStore
from shared.services.profile_cache import CachedProfileStore
from tests.conftest import ROOT, SMALL_CATALOG

T0 = datetime(2026, 10, 1, tzinfo=UTC)
KINDS = ("click_product", "view_details", "add_to_cart", "displayed_but_scrolled", "remove_from_cart")


def event(user: str, i: int) -> Interaction:
    """Event number i of `user`; order-independent in effect (no purchase-kind inference)."""
    rng = random.Random(i)
    return Interaction(
        event_id=f"{user}-{i}",
        event_type=rng.choice(KINDS),
        user_id=user,
        product_id=rng.choice(SMALL_CATALOG).id,
        timestamp=T0 + timedelta(seconds=rng.randrange(0, 20 * 86_400)),
    )


def engine() -> ProfileEngine:
    return ProfileEngine(load_rules(ROOT / "personalization_rules.yaml"), Catalog(SMALL_CATALOG))


def open_store(kind: str, target: str, codec: ProfileEngine) -> ProfileStore:
    if kind == "sqlite":
        from shared.adapters.profile_store.sqlite import SqliteProfileStore

        return SqliteProfileStore(target, codec)
    from google.cloud import firestore

    from shared.adapters.profile_store.firestore import FirestoreProfileStore

    os.environ["FIRESTORE_EMULATOR_HOST"] = target
    return FirestoreProfileStore(firestore.Client(project="contract"), codec)


def main(kind: str, target: str, user: str, start: str, stop: str, batch: str) -> None:
    codec = engine()
    store = open_store(kind, target, codec)
    applied = 0
    if batch == "cached":
        cached = CachedProfileStore(store, codec, flush_interval_s=0.25)
        for i in range(int(start), int(stop)):
            applied += sum(o.applied for o in cached.track(user, [event(user, i)], codec.apply))
        cached.close()
        print(f"done {applied}", flush=True)
        return
    for first in range(int(start), int(stop), int(batch)):
        events = [event(user, i) for i in range(first, min(first + int(batch), int(stop)))]
        outcomes = store.update(user, lambda p, events=events: [codec.apply(p, e) for e in events])
        applied += sum(o.applied for o in outcomes)
    print(f"done {applied}", flush=True)


if __name__ == "__main__":
    main(*sys.argv[1:])
