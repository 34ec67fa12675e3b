"""Almanac's appliance: the web portal (web/), the `almanac` command (cli/), the processes it runs (runtime/)
and the assistant's core (assistant/), composing the content and llm_engine packages."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version as _dist_version

try:
    __version__ = _dist_version("almanac")
except PackageNotFoundError:  # running from a checkout that was never installed
    __version__ = "0+unknown"
