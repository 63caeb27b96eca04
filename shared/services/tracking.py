"""Use case: apply tracked events to live profiles."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field

from shared.domain.engine import Applied, ProfileEngine
from shared.domain.events import EventType, Interaction, PurchaseKind
from shared.ports.profile_store import ProfileStore

Publish = Callable[[list[Interaction]], None]
# (events to keep, {event id: why it was dropped}): the shoppers' privacy settings and tombstones.
Screen = Callable[[list[Interaction]], tuple[list[Interaction], dict[str, str]]]


@dataclass
class TrackResult:
    accepted: list[str] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)
    signals: dict[str, str | None] = field(default_factory=dict)  # event id -> the signal it counted as
    refused: dict[str, str] = field(default_factory=dict)  # event id -> why it was neither applied nor kept


class TrackingService:
    """Applies a batch of events, one atomic profile update per user, and publishes the new ones."""

    def __init__(
        self,
        engine: ProfileEngine,
        profiles: ProfileStore,
        publish: Publish | None = None,
        screen: Screen | None = None,
    ) -> None:
        self.engine = engine
        self.profiles = profiles
        self.publish = publish
        self.screen = screen

    def track(self, events: list[Interaction]) -> TrackResult:
        """Apply events in the order given; an event id already applied is reported as a duplicate,
        one the shopper's privacy settings (or deletion) exclude as refused."""
        result = TrackResult()
        if self.screen is not None:
            events, result.refused = self.screen(events)
        by_user: dict[str, list[Interaction]] = defaultdict(list)
        for event in events:
            by_user[event.user_id].append(event)
        fresh: list[Interaction] = []
        for user_id, batch in by_user.items():
            outcomes = self.profiles.track(user_id, batch, self.engine.apply)
            for event, outcome in zip(batch, outcomes, strict=True):
                (result.accepted if outcome.applied else result.duplicates).append(event.event_id)
                result.signals[event.event_id] = outcome.signal
                if outcome.applied:
                    fresh.append(with_purchase_kind(event, outcome))
        if self.publish is not None and fresh:
            self.publish(fresh)
        return result


def with_purchase_kind(event: Interaction, outcome: Applied) -> Interaction:
    """A purchase carries the kind the profile counted it as, so the warehouse weighs it the same."""
    if event.event_type is EventType.PURCHASE and event.purchase_kind is None and outcome.signal:
        return event.model_copy(update={"purchase_kind": PurchaseKind(outcome.signal)})
    return event
