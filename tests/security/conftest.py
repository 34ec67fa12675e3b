"""Fixtures of the security tests: headless Chromium (the map tests' DevTools driver) and a witness server."""

from __future__ import annotations

import pytest

from .security_testing import Witness


@pytest.fixture
def witness():
    w = Witness()
    yield w
    w.close()
