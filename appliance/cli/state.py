"""What every `almanac` command may need, made on first use: the configuration, the data dir, the library."""

from __future__ import annotations

import click

from ..config import load_config
from ..datadir import prepare


class CliState:
    def __init__(self, config_path: str | None):
        self.config_path = config_path
        self._config = None

    @property
    def config(self):
        if self._config is None:
            self._config = load_config(self.config_path)
        return self._config

    def data(self):
        return prepare(self.config)

    def library(self):
        from content.library import Library

        data = self.data()
        return Library(data.db, data.archives)

    def box(self, *, progress: bool = False, **options):
        """The library, downloader, provenance and catalog of the data dir (appliance.fill.Box); with
        ``progress``, one tqdm bar per download on stderr."""
        from content.downloads.progress import TqdmProgress

        from ..fill import open_box

        if progress:
            options["on_progress"] = TqdmProgress()
        return open_box(self.config, self.data(), **options)


class BadInput(click.ClickException):
    """A request that names nothing usable (an unknown pack, job or book, a bad URL): one line, exit code 2,
    as for a bad option or a bad configuration."""

    exit_code = 2


pass_state = click.make_pass_decorator(CliState)
