"""Writes format-1 checkpoints with mbiapo 0.1 (commit 10ccb55) and the outputs its networks
give on fixed inputs: PYTHONPATH=<0.1 package> python make_v1.py OUT_DIR."""
import sys
from pathlib import Path

import torch

from mbiapo.agent import Agent
from mbiapo.checkpoint import save_checkpoint
from mbiapo.config import compose

out = Path(sys.argv[1])
for planner, kind in [("iterative", "model-free"), ("direct", "model-based")]:
    torch.manual_seed(0)
    cfg = compose("InvertedPendulum-v5", planner, overrides=[
        f"value.kind={kind}", "value.hidden=8", "planner.hidden=8", "value.model_hidden=8",
        "planner.iters=2", "train.batch_size=8"])
    agent = Agent(cfg, 3, 2)
    for _ in range(3):
        b = 8
        batch = {"obs": torch.randn(b, 3), "act": torch.rand(b, 2) * 2 - 1, "rew": torch.randn(b),
                 "next_obs": torch.randn(b, 3), "done": torch.zeros(b),
                 "model_weight": torch.ones(b)}
        agent.update(batch)
    name = f"{planner}-{kind}"
    save_checkpoint(out / f"{name}.pt", agent, {"step": 3})
    g = torch.Generator().manual_seed(1)
    obs, act = torch.randn(5, 3, generator=g), torch.rand(5, 2, generator=g) * 2 - 1
    lam = [torch.randn(5, 2, generator=g) for _ in range(4)]
    with torch.no_grad():
        expected = {"obs": obs, "act": act, "lambdas": torch.stack(lam),
                    "q": agent.q(obs, act), "q_target": agent.q_target(obs, act),
                    "planner": torch.stack(agent.planner.net(obs, *lam) if planner == "iterative"
                                           else agent.planner.net(obs)),
                    "adam_q": torch.stack([agent.q_opt.state[p]["exp_avg_sq"].sum()
                                           for p in agent.q.parameters()])}
        if kind == "model-based":
            expected["model"] = torch.cat([agent.model(obs, act).next_obs,
                                           agent.model(obs, act).reward[:, None]], 1)
            expected["rollout"] = torch.stack(agent.rollout(obs))
            expected["adam_model"] = torch.stack(
                [agent.model_opt.state[p]["exp_avg_sq"].sum()
                 for p in [*agent.model.parameters(), *agent.rollout.parameters()]])
            expected["model_param_sums"] = torch.stack(
                [p.sum() for p in [*agent.model.parameters(), *agent.rollout.parameters()]])
    torch.save(expected, out / f"{name}.expected.pt")
    print(name, sorted(expected))
