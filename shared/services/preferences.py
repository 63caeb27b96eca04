"""Use case: the shopper's live, decayed profile as a readable document."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime

from shared.domain.engine import ProfileEngine
from shared.domain.profile import Profile
from shared.ports.profile_store import ProfileStore
from shared.services.privacy import UserPrivacy, ignored_signals

FACET_GROUPS = {"category": "categories", "brand": "brands", "product": "products", "attribute": "attributes"}


def price_label(preference: float | None) -> str:
    if preference is None:
        return "unknown"
    return "budget" if preference < -0.1 else "premium" if preference > 0.1 else "neutral"


class PreferencesService:
    def __init__(
        self,
        engine: ProfileEngine,
        profiles: ProfileStore,
        clock: Callable[[], float] = time.time,
        privacy: Callable[[str], UserPrivacy] | None = None,
    ) -> None:
        self.engine = engine
        self.profiles = profiles
        self.clock = clock
        self.privacy = privacy

    def live(self, user_id: str, top: int = 50) -> dict:
        """Affinities per facet (strongest first), price sensitivity and preferred quantities."""
        now = self.clock()
        privacy = self.privacy(user_id) if self.privacy is not None else None
        ignore = ignored_signals(privacy)
        snapshot = self.profiles.read(user_id, lambda p: self._document(p, now, top, ignore))
        if snapshot is None:
            snapshot = {group: {} for group in FACET_GROUPS.values()} | {
                "price_sensitivity": {"preference": None, "label": "unknown"},
                "preferred_quantities": {},
            }
        settings = privacy.settings if privacy is not None else None
        if settings is not None and not settings.features.price_tracking:  # neither kept on show nor used
            snapshot["price_sensitivity"] = {"preference": None, "label": "not_tracked"}
        if settings is not None and not settings.features.household_inference:
            snapshot["preferred_quantities"] = {}
        used = settings is None or settings.personalization_enabled
        return {"user_id": user_id, "known": snapshot.pop("known", False), "as_of": _iso(now), "used": used} | snapshot

    def _document(self, profile: Profile, now: float, top: int, ignore: tuple[str, ...]) -> dict:
        affinities = self.engine.read(profile, now, ignore=ignore)
        groups: dict[str, dict[str, float]] = {group: {} for group in FACET_GROUPS.values()}
        for key, score in sorted(affinities.scores.items(), key=lambda kv: -abs(kv[1])):
            facet, _, value = key.partition(":")
            group = groups[FACET_GROUPS[facet]]
            if len(group) < top:
                group[value] = round(score, 4)
        preference = affinities.price_preference
        return groups | {
            "known": True,
            "price_sensitivity": {
                "preference": None if preference is None else round(preference, 4),
                "label": price_label(preference),
            },
            "preferred_quantities": self.engine.preferred_quantities(profile),
            # The ranking's long-horizon purchase memory (not part of the affinities above).
            "purchase_memory": {
                key: {"count": round(count, 3), "days_since": round(days, 1)}
                for key, (count, days) in sorted(affinities.history.items(), key=lambda kv: -kv[1][0])[:top]
            },
        }


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat().replace("+00:00", "Z")
