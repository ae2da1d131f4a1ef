"""Writes a format-3 model-based checkpoint with mbiapo 0.3.0 (the release before world-model
ensembles) and what its value estimate computed: PYTHONPATH=<0.3.0 package> python
make_format3.py OUT_DIR. Test: E = 1 reproduces these values, gradients and one update."""
import sys
from pathlib import Path

import torch

from mbiapo.agent import Agent
from mbiapo.checkpoint import save_checkpoint
from mbiapo.config import compose


def batch(g: torch.Generator, b: int = 8) -> dict:
    return {"obs": torch.randn(b, 3, generator=g), "act": torch.rand(b, 2, generator=g) * 2 - 1,
            "rew": torch.randn(b, generator=g), "next_obs": torch.randn(b, 3, generator=g),
            "done": (torch.rand(b, generator=g) < 0.25).float(),
            "model_weight": (torch.arange(b) % 4 != 0).float()}


out = Path(sys.argv[1])
torch.manual_seed(0)
cfg = compose("InvertedPendulum-v5", "direct", overrides=[
    "value.kind=model-based", "value.hidden=8", "planner.hidden=8", "value.model_hidden=8",
    "value.rollout_hidden=8", "train.batch_size=8", "value.horizon=3"])
agent = Agent(cfg, 3, 2)
g = torch.Generator().manual_seed(0)
for _ in range(4):
    agent.update(batch(g))
save_checkpoint(out / "direct-model-based.pt", agent, {"step": 4})
obs = torch.randn(5, 3, generator=g)
actions = (torch.rand(5, 6, 2, generator=g) * 2 - 1).requires_grad_()
torch.manual_seed(1)
value = agent.value(obs, actions, 1.0)
(grad,) = torch.autograd.grad(value.sum(), actions)
with torch.no_grad():
    torch.manual_seed(2)
    target = agent.target_value(obs, actions.detach(), 1.0)
    pred = agent.model(obs, actions[:, 0].detach())
next_batch = batch(g)
torch.manual_seed(3)
metrics = agent.update(next_batch)
expected = {"obs": obs, "actions": actions.detach(), "value": value.detach(), "grad": grad,
            "target": target, "next_obs": pred.next_obs, "reward": pred.reward,
            "cont": pred.cont, "batch": next_batch,
            "metrics": {k: v.detach() for k, v in metrics.items()}}
torch.save(expected, out / "direct-model-based.expected.pt")
print(sorted(expected), sorted(metrics))
