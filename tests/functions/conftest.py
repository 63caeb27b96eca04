"""Fixtures of the HTTP function tests."""

from __future__ import annotations

import pytest

from shared import bootstrap
from tests.conftest import installed_services


@pytest.fixture()
def services(tmp_path):
    """The instance's services on the small catalog, installed as the functions' own."""
    services = installed_services(tmp_path)
    yield services
    services.close()
    bootstrap.install(None)
