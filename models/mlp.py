"""Plain multi-layer perceptrons, and the stacked parameters of batched ensembles."""

import math
from collections.abc import Callable

import torch
from torch import Tensor, nn
from torch.nn import functional as F


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


def relu_backward(grad: Tensor, activation: Tensor) -> Tensor:
    """grad * (activation > 0) in one kernel (the one autograd uses for ReLU)."""
    return torch.ops.aten.threshold_backward(grad, activation, 0)


def _forward_saving(net: nn.Sequential, x: Tensor) -> tuple[Tensor, list[nn.Linear], list[Tensor]]:
    """``net(x)`` for a ReLU ``mlp`` without layer norm: y, its linear layers and the hidden
    activations (in-place ReLUs: call it without autograd)."""
    linears = [m for m in net if isinstance(m, nn.Linear)]
    activations = []
    for layer in linears[:-1]:
        x = F.linear(x, layer.weight, layer.bias).relu_()
        activations.append(x)
    return F.linear(x, linears[-1].weight, linears[-1].bias), linears, activations


def mlp_forward_vjp(net: nn.Sequential, x: Tensor) -> tuple[Tensor, Callable[[Tensor], Tensor]]:
    """``net(x)`` for a ReLU ``mlp`` without layer norm, plus its vector-Jacobian product
    w.r.t. the input: x (M, in) -> y (M, out), ``vjp(grad_y (M, out)) -> grad_x (M, in)``.
    Builds no autograd graph (call it under ``torch.no_grad``)."""
    y, linears, activations = _forward_saving(net, x)

    def vjp(grad: Tensor) -> Tensor:
        for layer, activation in zip(reversed(linears[1:]), reversed(activations)):
            grad = relu_backward(grad @ layer.weight, activation)
        return grad @ linears[0].weight

    return y, vjp


def mlp_forward_param_vjp(net: nn.Sequential, x: Tensor
                          ) -> tuple[Tensor, Callable[[Tensor], list[Tensor]]]:
    """Like ``mlp_forward_vjp``, but the product is w.r.t. the parameters:
    ``vjp(grad_y (m, out))`` for the first m <= M rows -> the gradients of
    ``net.parameters()``, in that order."""
    y, linears, activations = _forward_saving(net, x)
    layer_inputs = [x, *activations]

    def vjp(grad: Tensor) -> list[Tensor]:
        grads = []
        for i in reversed(range(len(linears))):
            inputs = layer_inputs[i][: grad.shape[0]]
            grads += [grad.sum(0), grad.t() @ inputs]  # bias, weight (reversed below)
            if i > 0:
                grad = relu_backward(grad @ linears[i].weight, inputs)
        return grads[::-1]

    return y, vjp
