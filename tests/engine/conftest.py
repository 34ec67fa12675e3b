"""Fixtures for the engine tests; the checkpoint builder lives in tinymoe.py."""

import pytest
from tinymoe import Checkpoints


@pytest.fixture(scope="session")
def checkpoints(tmp_path_factory) -> Checkpoints:
    return Checkpoints(tmp_path_factory.mktemp("engine-ckpt"))
