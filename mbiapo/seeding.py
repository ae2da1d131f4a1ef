"""Seeding every random number generator mbiapo draws from: Python's ``random``, numpy's
global generator and torch's (every device). Environments are seeded where their episodes
start (``env.reset(seed=...)``)."""

import random
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch


def seed_everything(seed: int) -> None:
    """Seed Python's ``random``, numpy's global generator and torch."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


@contextmanager
def seeded(seed: int) -> Iterator[None]:
    """``seed_everything(seed)`` for the block, and the generators as they were after it: a
    seeded evaluation inside a training run repeats without moving the run's own draws."""
    python, numpy = random.getstate(), np.random.get_state()
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_initialized() else []
    with torch.random.fork_rng(devices=devices):
        seed_everything(seed)
        try:
            yield
        finally:
            random.setstate(python)
            np.random.set_state(numpy)
