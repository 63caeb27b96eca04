"""Adapters: each port's implementations, chosen by short name in the settings."""

from __future__ import annotations

import importlib


def import_class(name: str, registry: dict[str, str]) -> type:
    """The class a short name (or a full "module.Class" path) names, imported only now: unused
    cloud clients never load."""
    path = registry.get(name, name)
    module_name, _, class_name = path.rpartition(".")
    if not module_name:
        raise ValueError(f"unknown adapter {name!r}: choose one of {sorted(registry)} or give module.Class")
    return getattr(importlib.import_module(module_name), class_name)
