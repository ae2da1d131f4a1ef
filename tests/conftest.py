import pytest
import torch

from tests.helpers import tiny_config


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture
def tiny_cfg():
    """A small, fast config on InvertedPendulum-v5 (|S| = 4, |A| = 1)."""

    def make(planner="direct", env="InvertedPendulum-v5", **extra):
        return tiny_config(planner, env, [f"{k}={v}" for k, v in extra.items()])

    return make
