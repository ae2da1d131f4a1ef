import signal

import pytest
import torch

from mbiapo import threads
from tests.helpers import tiny_config


def pytest_configure(config):
    """A shell starts a background job (``pytest &``, ``nohup``) with Ctrl-C ignored, and its
    children inherit that: an mbiapo command then keeps ignoring Ctrl-C, as programs do, and
    the tests that send it one could not interrupt it. The test session takes Ctrl-C back
    (a handled signal is reset to its default in each child), so these tests do not depend
    on how pytest was started."""
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


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
