import pytest
import torch

from mbiapo import threads
from tests.helpers import tiny_config


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture(autouse=True)
def _threads(request, monkeypatch):
    """Commands run in-process apply the thread policy; outside tests/test_threads.py its
    measure of busy cores is stubbed to idle (auto then takes every usable core, with no
    sampling wait), so results never depend on what else the machine runs. Torch's thread
    count and the process's policy are put back after each test."""
    before = torch.get_num_threads()
    monkeypatch.setattr(threads, "_POLICY", None)
    if request.module.__name__.rpartition(".")[2] != "test_threads":
        monkeypatch.setattr(threads, "SAMPLE_S", 0.0)
        monkeypatch.setattr(threads.CpuMeter, "others", lambda self: 0.0)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def tiny_cfg():
    """A small, fast config on InvertedPendulum-v5 (|S| = 4, |A| = 1)."""

    def make(planner="direct", env="InvertedPendulum-v5", **extra):
        return tiny_config(planner, env, [f"{k}={v}" for k, v in extra.items()])

    return make
