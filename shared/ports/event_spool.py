"""Port: a local, durable queue of events waiting for a backend (the profile store, the bus)."""

from __future__ import annotations

from abc import ABC, abstractmethod

from shared.domain.events import Interaction


class EventSpool(ABC):
    """Events the instance could not write yet, kept on local disk until they are written."""

    @abstractmethod
    def append(self, key: str, events: list[Interaction]) -> list[int]:
        """Store events under `key` (a user id, a batch id) durably; returns one id per event, in order."""

    @abstractmethod
    def remove(self, ids: list[int]) -> None:
        """Forget events that have reached the profile store."""

    @abstractmethod
    def adopt(self) -> list[tuple[int, str, Interaction]]:
        """Take over the events of instances that are gone (and this one's): (id, key, event), in order."""

    @abstractmethod
    def __len__(self) -> int:
        """How many events are waiting."""
