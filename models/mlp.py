"""Multi-layer perceptrons, single and as stacked ensembles, built from one recipe.

Every network of the toolkit is made here, so the configurable options (activation, layer
norm, width, depth) mean the same thing everywhere. Derivatives come from autograd.
"""

import math
from collections.abc import Callable
from functools import partial

import torch
from torch import Tensor, nn
from torch.nn import functional as F

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "leaky_relu": nn.LeakyReLU,
    "elu": nn.ELU,
    "silu": nn.SiLU,
    "mish": nn.Mish,
    "gelu": nn.GELU,
    "tanh": nn.Tanh,
}
"""The activations a config may name (``value.activation=elu``...): the one list of them."""

_IN_PLACE = {"relu", "leaky_relu"}
"""Activations applied in place (their backward needs only their output, and they always
follow a layer whose backward does not need its output): no extra (M, hidden) buffer."""


def check_shape(hidden: int, layers: int, activation: str, keys: str = "") -> None:
    """One-line ValueError, naming the valid choices, for a width, depth or activation no
    network can be built with; ``keys`` prefixes the setting names (``value.model_``)."""
    if hidden < 1 or layers < 1:
        raise ValueError(f"{keys}hidden and {keys}layers must be >= 1, got {hidden} and "
                         f"{layers}")
    if activation not in ACTIVATIONS:
        raise ValueError(f"{keys}activation={activation!r} is not valid; choose one of: "
                         f"{', '.join(ACTIVATIONS)}")


def _stack(in_dim: int, out_dim: int | None, hidden: int, layers: int, activation: str,
           layer_norm: bool, linear: Callable[[int, int], nn.Module],
           norm: Callable[[int], nn.Module]) -> nn.Sequential:
    """``layers`` x [linear, (norm), activation], then a linear output layer unless
    ``out_dim`` is None (a trunk that ends with its activation)."""
    check_shape(hidden, layers, activation)
    modules: list[nn.Module] = []
    width = in_dim
    for _ in range(layers):
        modules.append(linear(width, hidden))
        if layer_norm:
            modules.append(norm(hidden))
        modules.append(ACTIVATIONS[activation](**({"inplace": True} if activation in _IN_PLACE
                                                  else {})))
        width = hidden
    if out_dim is not None:
        modules.append(linear(width, out_dim))
    return nn.Sequential(*modules)


def mlp(in_dim: int, out_dim: int | None, hidden: int = 256, layers: int = 2,
        activation: str = "relu", layer_norm: bool = False) -> nn.Sequential:
    """``layers`` hidden layers of width ``hidden``: (..., in_dim) -> (..., out_dim), or
    (..., hidden) for ``out_dim=None``."""
    return _stack(in_dim, out_dim, hidden, layers, activation, layer_norm, nn.Linear,
                  nn.LayerNorm)


class EnsembleLinear(nn.Module):
    """E independent linear layers applied at once: x (E, M, in) -> (E, M, out) by one
    ``baddbmm``. Weight (E, in, out), bias (E, 1, out), each initialised like ``nn.Linear``."""

    def __init__(self, members: int, in_features: int, out_features: int):
        super().__init__()
        bound = 1.0 / math.sqrt(in_features)
        self.weight = nn.Parameter(torch.empty(members, in_features, out_features)
                                   .uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(members, 1, out_features).uniform_(-bound, bound))

    def forward(self, x: Tensor, members: Tensor | slice | None = None) -> Tensor:
        """x (E, M, in), or (K, M, in) with ``members`` (K,) (or a slice): those members'."""
        if members is None:
            return torch.baddbmm(self.bias, x, self.weight)
        return torch.baddbmm(self.bias[members], x, self.weight[members])


class EnsembleLayerNorm(nn.Module):
    """Layer norm over the last dimension with each member's own affine parameters:
    x (E, M, D) -> (E, M, D); weight and bias (E, 1, D)."""

    def __init__(self, members: int, dim: int):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(members, 1, dim))
        self.bias = nn.Parameter(torch.zeros(members, 1, dim))

    def forward(self, x: Tensor, members: Tensor | slice | None = None) -> Tensor:
        """x (E, M, D), or (K, M, D) with ``members`` (K,) (or a slice): their affine
        parameters."""
        weight, bias = (self.weight, self.bias) if members is None else (
            self.weight[members], self.bias[members])
        return torch.addcmul(bias, F.layer_norm(x, x.shape[-1:]), weight)


def ensemble_forward(net: nn.Sequential, x: Tensor,
                     members: Tensor | slice | None = None) -> Tensor:
    """An ``ensemble_mlp`` on x (E, M, in) -> (E, M, out), or only some of its networks:
    ``members`` (K,) indexes them (a network may repeat) or a slice selects them (no copy of
    the weights), x (K, M, in) -> (K, M, out)."""
    if members is None:
        return net(x)
    for layer in net:
        x = layer(x, members) if isinstance(layer, EnsembleLinear | EnsembleLayerNorm) \
            else layer(x)
    return x


def ensemble_mlp(members: int, in_dim: int, out_dim: int, hidden: int = 256, layers: int = 2,
                 activation: str = "relu", layer_norm: bool = False) -> nn.Sequential:
    """E independent ``mlp``s with stacked weights: x (E, M, in_dim) -> (E, M, out_dim)."""
    return _stack(in_dim, out_dim, hidden, layers, activation, layer_norm,
                  partial(EnsembleLinear, members), partial(EnsembleLayerNorm, members))
