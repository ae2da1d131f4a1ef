"""Running mean and variance of a stream of vectors, kept as module buffers (checkpointed)."""

import torch
from torch import Tensor, nn


class RunningNormalizer(nn.Module):
    """Per-dimension statistics of everything passed to ``update``; (..., D) in and out."""

    def __init__(self, dim: int, min_std: float = 1e-4):
        super().__init__()
        self.min_std = min_std
        self.register_buffer("count", torch.zeros((), dtype=torch.float64))
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("var", torch.ones(dim))

    @torch.no_grad()
    def update(self, x: Tensor) -> None:
        """Merge a batch (N, D) into the statistics (Chan et al.'s parallel update)."""
        n = x.shape[0]
        total = self.count + n
        batch_mean = x.mean(0)
        delta = batch_mean - self.mean
        old = (self.count / total).float()
        self.mean += delta * (n / total).float()
        self.var.mul_(old).add_(x.var(0, correction=0) * (1 - old) + delta.pow(2) * old * (1 - old))
        self.count.copy_(total)

    @property
    def std(self) -> Tensor:
        return self.var.sqrt().clamp_min(self.min_std)

    def normalize(self, x: Tensor) -> Tensor:
        return (x - self.mean) / self.std

    def denormalize(self, z: Tensor) -> Tensor:
        return self.mean + z * self.std
