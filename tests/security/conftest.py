"""Fixtures of the security tests: headless Chromium (the map tests' DevTools driver) and a witness server."""

from __future__ import annotations

import pytest

from .security_testing import Witness


@pytest.fixture
def browser():
    """Headless Debian Chromium driven over DevTools; a missing browser fails (CI installs it)."""
    pytest.importorskip("websocket", reason="websocket-client (dev dependency) drives Chromium")
    from maps.cdp import Browser, chromium_path

    binary = chromium_path()
    if binary is None:
        pytest.fail("Debian's chromium is required for the browser tests (apt-get install chromium)")
    b = Browser(binary)
    yield b
    b.close()


@pytest.fixture
def witness():
    w = Witness()
    yield w
    w.close()
