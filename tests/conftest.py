import pytest
import torch

from mbiapo.config import compose


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture
def tiny_cfg():
    """A small, fast config on InvertedPendulum-v5 (|S| = 4, |A| = 1)."""

    def make(planner="direct", env="InvertedPendulum-v5", **extra):
        overrides = ["planner.hidden=32", "value.hidden=32", "train.batch_size=32",
                     "train.warmup_steps=50", "train.eval_every=100", "train.eval_episodes=2",
                     "env.max_episode_steps=50", *[f"{k}={v}" for k, v in extra.items()]]
        return compose(env, planner, overrides=overrides)

    return make
