"""The same agents on a GPU (marked ``cuda``; skipped where torch sees none)."""

import numpy as np
import pytest
import torch

from mbiapo.agent import Agent

pytestmark = [pytest.mark.cuda,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")]


def _batch(rng, n=32, device="cuda"):
    return {"obs": torch.randn(n, 4, device=device),
            "act": torch.rand(n, 1, device=device) * 2 - 1,
            "rew": torch.randn(n, device=device), "next_obs": torch.randn(n, 4, device=device),
            "done": torch.zeros(n, device=device), "model_weight": torch.ones(n, device=device)}


@pytest.mark.parametrize("planner", ["direct", "iterative"])
@pytest.mark.parametrize("kind", ["model-free", "model-based"])
def test_agent_updates_and_acts_on_cuda_like_on_the_cpu(tiny_cfg, planner, kind):
    """Same seed, same config: the CUDA agent's first update moves its parameters like the
    CPU agent's (up to float differences), and acting returns actions on the host."""
    agents = {}
    for device in ("cpu", "cuda"):
        torch.manual_seed(0)
        agents[device] = Agent(tiny_cfg(planner, **{"value.kind": kind,
                                                    "train.device": device}), 4, 1)
    assert all(p.is_cuda for p in agents["cuda"].parameters())
    for device, agent in agents.items():
        torch.manual_seed(1)
        batch = {k: v.to(device) for k, v in _batch(None, device="cpu").items()}
        metrics = agent.update(batch)
        assert all(torch.isfinite(v).all() for v in metrics.values())
    for (name, p_cpu), p_cuda in zip(agents["cpu"].named_parameters(),
                                     agents["cuda"].parameters()):
        torch.testing.assert_close(p_cuda.cpu(), p_cpu, atol=1e-4, rtol=1e-3, msg=name)
    action = agents["cuda"].act(np.zeros(4, np.float32))
    assert isinstance(action, np.ndarray) and action.shape == (1,)


def test_compiled_planning_gradient_runs_on_cuda(tiny_cfg):
    agent = Agent(tiny_cfg("iterative", **{"train.device": "cuda"}), 4, 1)
    obs = torch.randn(8, 4, device="cuda")
    mu, log_std = torch.zeros(8, 1, device="cuda"), torch.zeros(8, 1, device="cuda")
    torch.manual_seed(0)
    _, eager = agent.objective(obs, 1.0, 1000).value_and_grad(mu, log_std)
    agent.compile_value_gradient()
    torch.manual_seed(0)
    _, compiled = agent.objective(obs, 1.0, 1000).value_and_grad(mu, log_std)
    for a, b in zip(compiled, eager):  # different draws: agree to Monte Carlo error
        torch.testing.assert_close(a, b, atol=0.05, rtol=0.1)


def test_world_model_ensemble_learns_plans_and_acts_on_cuda(tiny_cfg):
    """Five probabilistic members, three elites and the max-sigma penalty on the GPU:
    updates (bootstrap, held-out elites), acting, and the held-out metrics agree with the
    same model's on the CPU."""
    cfg = tiny_cfg("iterative", **{"value.kind": "model-based", "value.model_members": 5,
                                   "value.model_elites": 3, "value.model_probabilistic": True,
                                   "value.uncertainty": "max_sigma",
                                   "value.uncertainty_penalty": 1.0, "train.device": "cuda"})
    agent = Agent(cfg, 4, 1)
    for seed in range(3):
        torch.manual_seed(seed)
        batch = _batch(None)
        batch["model_weight"] = (torch.arange(32, device="cuda") % 4 != 0).float()
        metrics = agent.update(batch)
        assert all(torch.isfinite(v).all() for v in metrics.values()), metrics
    assert {"model_loss", "uncertainty"} <= metrics.keys()
    assert agent.estimator.model.elites.is_cuda and len(agent.estimator.model.elites) == 3
    action = agent.act(np.zeros(4, np.float32))
    assert action.shape == (1,) and np.isfinite(action).all()
    cfg_cpu = cfg.copy()
    cfg_cpu.train.device = "cpu"
    cpu = Agent(cfg_cpu, 4, 1)
    cpu.load_state_dict({k: v.cpu() for k, v in agent.state_dict().items()})
    held = {k: v.cpu() for k, v in _batch(None).items()}
    on_gpu = agent.estimator.evaluate({k: v.cuda() for k, v in held.items()})
    on_cpu = cpu.estimator.evaluate(held)
    for key in ("model_error", "model_member_error_min", "model_member_error_max",
                "uncertainty_heldout"):
        assert on_gpu[key] == pytest.approx(on_cpu[key], rel=1e-3, abs=1e-5), key
