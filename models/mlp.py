"""Plain multi-layer perceptrons, and the stacked parameters of batched ensembles."""

import math

import torch
from torch import nn


def mlp(
    in_dim: int,
    out_dim: int,
    hidden: int = 256,
    layers: int = 2,
    activation: type[nn.Module] = nn.ReLU,
    layer_norm: bool = False,
) -> nn.Sequential:
    """``layers`` hidden layers of width ``hidden``; maps (..., in_dim) -> (..., out_dim)."""
    modules: list[nn.Module] = []
    width = in_dim
    for _ in range(layers):
        modules.append(nn.Linear(width, hidden))
        if layer_norm:
            modules.append(nn.LayerNorm(hidden))
        modules.append(activation())
        width = hidden
    modules.append(nn.Linear(width, out_dim))
    return nn.Sequential(*modules)


def stacked_linear(members: int, fan_in: int, fan_out: int) -> tuple[nn.Parameter, nn.Parameter]:
    """Weights (E, in, out) and biases (E, 1, out) for E independent linear layers, each
    initialised like ``nn.Linear``; ``torch.baddbmm(b, x, w)`` applies all E at once."""
    bound = 1.0 / math.sqrt(fan_in)
    w = torch.empty(members, fan_in, fan_out).uniform_(-bound, bound)
    b = torch.empty(members, 1, fan_out).uniform_(-bound, bound)
    return nn.Parameter(w), nn.Parameter(b)
