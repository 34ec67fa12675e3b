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


pass_state = click.make_pass_decorator(CliState)
