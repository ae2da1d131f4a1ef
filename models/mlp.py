"""Plain multi-layer perceptrons."""

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
