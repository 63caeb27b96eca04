"""Shoppers own their data: privacy settings, which signals each one governs, deletion requests."""

from __future__ import annotations

import hashlib
import uuid
from datetime import datetime, timedelta
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from shared.domain.events import EventType, Interaction, UtcTime

# What each feature flag governs. Off: its events are neither applied, stored nor published, and
# what was learnt from it is not used (price_tracking: the profile's price preference;
# household_inference: learnt quantities and segments).
FEATURE_EVENTS: dict[str, frozenset[EventType]] = {
    "search_history": frozenset({EventType.SEARCH}),
    "purchase_history": frozenset({EventType.PURCHASE, EventType.RETURNED}),
    "price_tracking": frozenset(),
    "household_inference": frozenset(),
}

# Erasure steps of a deletion request, in order. The instance cache and profile store are cleared
# when it is made; "profile" clears the store again in case an instance that had not yet seen the
# tombstone wrote to it.
ERASURE_STEPS = ("profile", "graph", "warehouse", "archive", "features")
ERASURE_DEADLINE = timedelta(hours=72)


# What each part of a data export is used for.
DATA_USES = {
    "privacy_settings": "your choices: what is collected and used, and how long raw events are kept",
    "live_profile": "re-ranking your searches in real time (decayed affinities, price sensitivity, quantities, "
    "and a year-long memory of what you bought for the search ranking)",
    "warehouse": "your raw events and what the scheduled jobs learnt from them (reorder cycles, usual "
    "basket, segments, associations); raw events are kept data_retention_days",
    "archive": "the durable copy of every event (JSONL), for replay and audits; kept data_retention_days",
    "graph_memory": "what you usually buy and when it is due again: orders, strong signals and facts",
    "learnt_features": "what search shows you from the jobs: your usual, time to reorder, quantities",
}


class PrivacyFeatures(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    search_history: bool = True
    purchase_history: bool = True
    price_tracking: bool = True
    household_inference: bool = True


class PrivacySettings(BaseModel):
    """A shopper's choices; the defaults apply to anyone who never made one."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    personalization_enabled: bool = True
    features: PrivacyFeatures = PrivacyFeatures()
    data_retention_days: int = Field(default=90, ge=1, le=3650)

    def allows(self, event: Interaction) -> str | None:
        """None when the event may be kept and used, else the setting that forbids it."""
        if not self.personalization_enabled:
            return "personalization_disabled"
        for feature, types in FEATURE_EVENTS.items():
            if event.event_type in types and not getattr(self.features, feature):
                return f"{feature}_disabled"
        return None


class PrivacyFeaturesUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    search_history: bool | None = None
    purchase_history: bool | None = None
    price_tracking: bool | None = None
    household_inference: bool | None = None


class PrivacyUpdate(BaseModel):
    """PUT body: the fields given replace the current ones, the others stay."""

    model_config = ConfigDict(extra="forbid")

    personalization_enabled: bool | None = None
    features: PrivacyFeaturesUpdate | None = None
    data_retention_days: int | None = Field(default=None, ge=1, le=3650)

    def applied_to(self, current: PrivacySettings) -> PrivacySettings:
        features = current.features.model_copy(
            update=self.features.model_dump(exclude_none=True) if self.features else {}
        )
        top = self.model_dump(exclude_none=True, exclude={"features"})
        return current.model_copy(update=top | {"features": features})


class DeletionRequest(BaseModel):
    """An erasure in progress (or done): the steps finished so far, when, and the last failure."""

    model_config = ConfigDict(extra="forbid")

    request_id: str
    user_id: str
    requested_at: UtcTime  # times are aware UTC whatever a store hands back
    due_by: UtcTime
    status: Literal["pending", "complete"] = "pending"
    steps: dict[str, UtcTime] = Field(default_factory=dict)  # step -> when it finished
    attempts: int = 0
    last_error: str | None = None
    completed_at: UtcTime | None = None

    @classmethod
    def new(cls, user_id: str, at: datetime) -> DeletionRequest:
        return cls(request_id=str(uuid.uuid4()), user_id=user_id, requested_at=at, due_by=at + ERASURE_DEADLINE)

    def remaining(self) -> list[str]:
        return [step for step in ERASURE_STEPS if step not in self.steps]


def tombstone_key(user_id: str) -> str:
    """Deleted users are remembered by a digest, not their id, to drop their late events."""
    return hashlib.sha256(user_id.encode()).hexdigest()
