import copy

import pytest
import torch

from mbiapo.optim import LeanAdam


def _params(seed: int) -> list[torch.nn.Parameter]:
    gen = torch.Generator().manual_seed(seed)
    return [torch.nn.Parameter(torch.randn(shape, generator=gen)) for shape in [(3, 4), (4,), ()]]


def _run(opt_cls, steps: int, drop_grad_at: int | None = None, **kwargs):
    params = _params(0)
    groups = [{"params": params[:2]}, {"params": params[2:]}]
    opt = opt_cls(groups, lr=1e-2, **kwargs)
    gen = torch.Generator().manual_seed(1)
    for k in range(steps):
        for i, p in enumerate(params):
            p.grad = None if (k == drop_grad_at and i == 1) else torch.randn(p.shape, generator=gen)
        opt.step()
    return params, opt


def test_lean_adam_equals_fused_adam_bitwise():
    lean, lean_opt = _run(LeanAdam, 5)
    ref, ref_opt = _run(torch.optim.Adam, 5, fused=True)
    for a, b in zip(lean, ref):
        assert torch.equal(a, b)
    states = zip(lean_opt.state_dict()["state"].values(), ref_opt.state_dict()["state"].values())
    for sa, sb in states:
        for key in ("step", "exp_avg", "exp_avg_sq"):
            assert torch.equal(sa[key], sb[key])


def test_lean_adam_missing_gradient_skips_that_parameter_like_adam():
    lean, lean_opt = _run(LeanAdam, 4, drop_grad_at=2)
    ref, _ = _run(torch.optim.Adam, 4, drop_grad_at=2, fused=True)
    for a, b in zip(lean, ref):
        assert torch.equal(a, b)
    steps = [lean_opt.state[p]["step"].item() for p in lean]
    assert steps == [4, 3, 4]


def test_lean_adam_state_round_trips_through_plain_adam():
    lean, lean_opt = _run(LeanAdam, 3)
    copies = [torch.nn.Parameter(p.detach().clone()) for p in lean]
    plain = torch.optim.Adam([{"params": copies[:2]}, {"params": copies[2:]}], lr=1e-2,
                             fused=True)
    plain.load_state_dict(copy.deepcopy(lean_opt.state_dict()))
    for p, q in zip(lean, copies):
        p.grad = torch.full_like(p, 0.5)
        q.grad = torch.full_like(q, 0.5)
    lean_opt.step()
    plain.step()
    assert all(torch.equal(p, q) for p, q in zip(lean, copies))
    assert lean_opt.state[lean[0]]["step"].item() == 4


def test_lean_adam_zero_grad_sets_none():
    params, opt = _run(LeanAdam, 1)
    opt.zero_grad()
    assert all(p.grad is None for p in params)


@pytest.mark.parametrize("kwargs", [{"amsgrad": True}, {"weight_decay": 0.1}])
def test_lean_adam_other_settings_fall_back_to_adam(kwargs):
    params = _params(0)
    lean = LeanAdam([{"params": params, **kwargs}], lr=1e-2)
    ref_params = _params(0)
    ref = torch.optim.Adam([{"params": ref_params, **kwargs}], lr=1e-2, fused=True)
    for _ in range(3):
        for p, q in zip(params, ref_params):
            p.grad = torch.ones_like(p)
            q.grad = torch.ones_like(q)
        lean.step()
        ref.step()
    for a, b in zip(params, ref_params):
        assert torch.equal(a, b)


def test_step_together_equals_separate_steps_and_falls_back_on_a_first_step():
    results = []
    for together in (True, False):
        params = _params(0)
        first, second = LeanAdam(params[:2], lr=1e-2), LeanAdam(params[2:], lr=3e-2)
        gen = torch.Generator().manual_seed(1)
        for _ in range(3):  # the first step has no state yet: Adam's own code initialises it
            for p in params:
                p.grad = torch.randn(p.shape, generator=gen)
            if together:
                LeanAdam.step_together(first, second)
            else:
                first.step()
                second.step()
        results.append(params)
    assert all(torch.equal(a, b) for a, b in zip(*results))
    assert first.state[params[0]]["step"].item() == 3
