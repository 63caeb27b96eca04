"""Use case: apply tracked events to live profiles."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from shared.domain.engine import ProfileEngine
from shared.domain.events import Interaction
from shared.ports.profile_store import ProfileStore


@dataclass
class TrackResult:
    accepted: list[str] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)


class TrackingService:
    """Applies a batch of events, one atomic profile update per user."""

    def __init__(self, engine: ProfileEngine, profiles: ProfileStore) -> None:
        self.engine = engine
        self.profiles = profiles

    def track(self, events: list[Interaction]) -> TrackResult:
        """Apply events in the order given; an event id already applied is reported as a duplicate."""
        by_user: dict[str, list[Interaction]] = defaultdict(list)
        for event in events:
            by_user[event.user_id].append(event)
        result = TrackResult()
        for user_id, batch in by_user.items():
            outcomes = self.profiles.track(user_id, batch, self.engine.apply)
            for event, outcome in zip(batch, outcomes, strict=True):
                (result.accepted if outcome.applied else result.duplicates).append(event.event_id)
        return result
