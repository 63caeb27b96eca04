"""Shared fixtures: the project's rules file and a small hand-written catalog."""

from __future__ import annotations

from pathlib import Path

import pytest

from shared.domain.catalog import Catalog, Product
from shared.domain.rules import Rules, load_rules

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def rules() -> Rules:
    return load_rules(ROOT / "personalization_rules.yaml")


def product(pid: str, name: str, brand: str, category: str, attrs=(), price=3.0, dept="dairy") -> Product:
    return Product(id=pid, name=name, brand=brand, category=category, department=dept, attributes=attrs, price=price)


SMALL_CATALOG = [
    product("oat-milk", "Oatly Oat Milk", "Oatly", "milk", ("vegan", "plant-based", "dairy-free"), 4.5),
    product("whole-milk", "Organic Valley Whole Milk", "Organic Valley", "milk", ("organic",), 5.0),
    product("skim-milk", "Horizon Skim Milk", "Horizon", "milk", (), 3.5),
    product("greek-yogurt", "Chobani Greek Yogurt", "Chobani", "yogurt", ("high-protein",), 1.5),
    product(
        "oat-yogurt", "Oatly Oatgurt Plant-Based Yogurt", "Oatly", "yogurt", ("vegan", "plant-based", "dairy-free"), 2.0
    ),
    product("spicy-chips", "Doritos Flamin Hot Chips", "Doritos", "chips", ("spicy",), 4.0, "snacks"),
    product("original-chips", "Lay's Original Chips", "Lay's", "chips", (), 3.0, "snacks"),
]


@pytest.fixture()
def small_catalog() -> Catalog:
    return Catalog(SMALL_CATALOG)


@pytest.fixture(scope="session", autouse=True)
def local_state(tmp_path_factory) -> Path:
    """Every local file the services write goes to a temporary folder, never the repo's var/."""
    state = tmp_path_factory.mktemp("var")
    paths = {
        "LEAFLOAF_SQLITE_PATH": "profiles.sqlite3",
        "LEAFLOAF_PROFILE_SPOOL_PATH": "profile-spool.sqlite3",
        "LEAFLOAF_BUS_PATH": "event-bus.sqlite3",
        "LEAFLOAF_PUBLISH_SPOOL_PATH": "publish-spool.sqlite3",
        "LEAFLOAF_DUCKDB_PATH": "warehouse.duckdb",
        "LEAFLOAF_ARCHIVE_PATH": "archive",
        "LEAFLOAF_KUZU_PATH": "graph.kuzu",
        "LEAFLOAF_FEATURES_CACHE_PATH": "features",
        "LEAFLOAF_PRIVACY_PATH": "privacy.sqlite3",
        "LEAFLOAF_AUTH_SECRET_PATH": "auth-secret",
        "LEAFLOAF_CATALOG_STORE_PATH": "catalog.sqlite3",
    }
    with pytest.MonkeyPatch.context() as patch:
        for name, file in paths.items():
            patch.setenv(name, str(state / file))
        # Tests of other features act for shoppers without tokens; tests/functions/test_privacy.py
        # and tests/e2e/test_privacy.py run with authentication on.
        patch.setenv("LEAFLOAF_AUTH", "off")
        patch.setenv("LEAFLOAF_DEMO_CATALOG", "true")  # as ./dev run: an empty store gets the demo catalog
        yield state


pytest_plugins = ["tests.emulator_fixtures"]


def installed_services(state: Path, **overrides):
    """The instance's services on the small catalog, every file they write under `state`, installed
    as the instance's own (the caller closes them and installs None)."""
    from shared import bootstrap
    from shared.config import Settings

    paths = {
        "catalog_path": state / "none.jsonl",
        "catalog_store_path": state / "catalog.sqlite3",
        "bus_path": state / "bus.sqlite3",
        "publish_spool_path": state / "publish-spool.sqlite3",
        "duckdb_path": state / "warehouse.duckdb",
        "archive_path": state / "archive",
        "kuzu_path": state / "graph.kuzu",
        "features_cache_path": state / "features",
        "privacy_path": state / "privacy.sqlite3",
        "auth_secret_path": state / "auth-secret",
    }
    settings = Settings(**({"profile_store": "memory", "local_schedule": False} | paths | overrides))
    bootstrap.open_catalog_store(settings).replace(SMALL_CATALOG)  # the store's version 1, as an import makes
    services = bootstrap.build(settings)
    bootstrap.install(services)
    return services
