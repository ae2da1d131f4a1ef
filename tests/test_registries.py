"""Extension points (issue 17): planners and value estimators registered once, by a plugin,
work in every command; their settings are typed and overridable; checkpoints name the
plugins they need. The plugin is written by this file (PLUGIN) and loaded with --plugin."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from mbiapo import registry
from mbiapo.agent import Agent
from mbiapo.checkpoint import read_checkpoint
from mbiapo.config import from_container
from mbiapo.planners import PLANNERS
from mbiapo.value import Q_NETWORKS
from tests.helpers import TINY, error_line, registries_restored, run_cli

ROOT = Path(__file__).parents[1]
SHIPPED = ROOT / "mbiapo" / "pretrained" / "ip-iterative"

PLUGIN = '''
"""Test plugin: random shooting (untrained), a linear policy (trained) and an optimistic
value estimator."""
import sys
from dataclasses import dataclass

import torch
from torch import nn

from mbiapo.models.q_ensemble import cat_broadcast, pessimistic
from mbiapo.planners import Plan, PlannerConfig, register
from mbiapo.planners.base import surrogate
from mbiapo.value import ValueConfig, register as register_value, register_q_network


@dataclass
class ShootingConfig(PlannerConfig):
    iters: int = 2
    population: int = 64  # uniform actions per iteration
    log_std: float = -3.0  # sigma of the returned distribution


class RandomShooting:
    """Uniform actions in [-1, 1] scored by objective.q; the best one so far is the mean."""

    trainable = False

    def __init__(self, obs_dim, act_dim, iters=2, population=64, log_std=-3.0):
        self.act_dim, self.iters = act_dim, iters
        self.population, self.log_std = population, log_std
        print(f"shooting: population {population}", file=sys.stderr)

    @torch.no_grad()
    def plan(self, objective, obs, iters=None, init=None, record=True, callback=None,
             train_rows=None):
        b = obs.shape[0]
        best_q = obs.new_full((b,), -float("inf"))
        best = obs.new_zeros(b, self.act_dim)
        plan = Plan(best, best)
        for k in range(iters or self.iters):
            actions = torch.rand(b, self.population, self.act_dim) * 1.98 - 0.99
            q = objective.q(actions)  # (B, N)
            top, index = q.max(1)
            better = top > best_q
            best_q = torch.where(better, top, best_q)
            best = torch.where(better[:, None], actions[torch.arange(b), index], best)
            mu, log_std = torch.atanh(best), torch.full_like(best, self.log_std)
            if callback is not None:
                callback(k, mu, log_std)
            if record:
                plan.values.append(objective(mu, log_std))
                plan.seconds.append(0.0)
        plan.mu, plan.log_std = mu, log_std
        return plan


class LinearPolicy(nn.Module):
    """lambda = W s + b, trained through the surrogate like the direct planner."""

    trainable = True
    iters = 1

    def __init__(self, obs_dim, act_dim, iters=1):
        super().__init__()
        self.net = nn.Linear(obs_dim, 2 * act_dim)

    def plan(self, objective, obs, iters=None, init=None, record=True, callback=None,
             train_rows=None):
        n = obs.shape[0] if train_rows is None else train_rows
        mu, log_std = self.net(obs).chunk(2, -1)
        log_std = log_std.clamp(-5.0, 2.0)
        plan = Plan(mu.detach(), log_std.detach())
        if record or torch.is_grad_enabled():
            value, grads = objective.value_and_grad(mu[:n], log_std[:n])
            plan.values.append(value)
            plan.seconds.append(0.0)
            if torch.is_grad_enabled():
                plan.surrogate = surrogate([grads], [(mu[:n], log_std[:n])])
        return plan


@dataclass
class OptimisticConfig(ValueConfig):
    bonus: float = 0.0  # Q-hat = mean + bonus * std (beta is ignored)


def optimistic(agent):
    q, bonus = agent.q, agent.cfg.value.bonus
    print(f"optimistic: bonus {bonus}", file=sys.stderr)
    return lambda obs, actions, beta: pessimistic(
        q(obs[: actions.shape[0]].unsqueeze(1), actions), -bonus)


class QuadraticQ(nn.Module):
    """A Q ensemble of E quadratic forms in (s, a): Q_e = -||W_e [s; a] + b_e||^2."""

    def __init__(self, obs_dim, act_dim, members):
        super().__init__()
        self.proj = nn.Parameter(0.1 * torch.randn(members, obs_dim + act_dim, 8))
        self.bias = nn.Parameter(torch.zeros(members, 8))

    def forward(self, obs, act):
        x = cat_broadcast(obs, act)  # (..., S + A)
        h = torch.einsum("...i,eij->e...j", x, self.proj)
        h = h + self.bias.reshape(self.bias.shape[0], *([1] * (x.dim() - 1)), -1)
        return -h.square().sum(-1)  # (E, ...)


def quadratic_q(obs_dim, act_dim, cfg):
    return QuadraticQ(obs_dim, act_dim, cfg.members)


register("shooting", RandomShooting, ShootingConfig)
register_q_network("quadratic", quadratic_q)
register("linear", LinearPolicy)
register_value("optimistic", optimistic, OptimisticConfig)
'''


@pytest.fixture(scope="module")
def plugin(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("plugin") / "my_planners.py"
    path.write_text(PLUGIN)
    return path


@pytest.fixture
def loaded(plugin):
    """The plugin registered in this process, and the registries restored afterwards."""
    with registries_restored():
        registry.load_plugin(str(plugin))
        yield str(plugin)


def _mbiapo(*argv, cwd: Path) -> subprocess.CompletedProcess:
    """``mbiapo ARGV`` in a subprocess (a fresh registry: only --plugin adds to it)."""
    done = subprocess.run([sys.executable, "-m", "mbiapo.cli", *map(str, argv)], cwd=cwd,
                          capture_output=True, text=True, timeout=600,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-2000:]
    return done


@pytest.fixture(scope="module")
def states(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("states") / "states.h5"
    from mbiapo.cli import main

    assert main(["states", "--checkpoint", str(SHIPPED), "--n", "6", "--out", str(path)]) == 0
    return path


def test_a_plugin_planner_runs_through_every_command_with_its_own_setting(plugin, states,
                                                                         tmp_path):
    """plan, evaluate, compare and gap, each as its own process with --plugin and
    planner.population=16 (the planner prints the population it was built with)."""
    common = ["--checkpoint", SHIPPED, "--plugin", plugin]
    plan = _mbiapo("plan", *common, "--planner", "shooting", "--episodes", "1", "--json",
                   "planner.population=16", cwd=tmp_path)
    assert "shooting: population 16" in plan.stderr
    assert json.loads(plan.stdout)["planner"] == "shooting"
    evaluate = _mbiapo("evaluate", *common, "--planner", "shooting", "--episodes", "2",
                       "--json", "planner.population=16", cwd=tmp_path)
    assert "shooting: population 16" in evaluate.stderr
    assert json.loads(evaluate.stdout)["episodes"] == 2
    compare = _mbiapo("compare", *common, "--states", states, "--iters", "3", "--out",
                      tmp_path / "compare", "--json", "planner.population=16", cwd=tmp_path)
    summary = json.loads(compare.stdout)
    assert "shooting: population 16" in compare.stderr
    assert {"iterative", "adam", "cem", "mppi", "shooting"} == set(summary["planners"])
    assert summary["overrides"] == ["planner.population=16"]
    gap = _mbiapo("gap", *common, "--states", states, "--planners", "iterative,shooting",
                  "--steps", "3", "--out", tmp_path / "gap", "--json", "planner.population=16",
                  cwd=tmp_path)
    assert "shooting: population 16" in gap.stderr
    assert {"iterative", "iterative+5", "shooting"} == set(json.loads(gap.stdout)["planners"])


def test_a_plugin_planner_setting_is_checked_against_its_schema(loaded, states, tmp_path,
                                                                capsys):
    line = error_line(capsys, "evaluate", "--checkpoint", SHIPPED, "--planner", "shooting",
                      "planner.temperature=2")
    assert "unknown config key" in line and "population" in line
    line = error_line(capsys, "compare", "--checkpoint", SHIPPED, "--states", states,
                      "--planners", "adam", "--out", tmp_path / "c", "planner.population=16")
    assert "'planner.population=16' sets no listed untrained planner (adam)" in line


def test_a_trainable_plugin_planner_trains_and_needs_its_plugin_to_load(loaded, tmp_path,
                                                                      capsys):
    out = tmp_path / "run"
    code, _, err = run_cli(capsys, "train", "--env", "InvertedPendulum-v5", "--planner",
                           "linear", "--steps", "300", "--out", out, "--plugin", loaded,
                           *TINY[1:])
    assert code == 0, err
    payload = read_checkpoint(out)
    assert payload["plugins"] == {"planner.name": loaded}
    torch.manual_seed(0)  # as the run built its agent: the planner moved from there
    initial = Agent(from_container(payload["config"]), 4, 1).planner.net.weight
    assert payload["updates"] == 251
    assert (payload["agent"]["planner.net.weight"] - initial).abs().min() > 0
    PLANNERS._entries.pop("linear")  # as in a process without --plugin
    line = error_line(capsys, "evaluate", "--checkpoint", out, "--episodes", "1")
    assert line == (f"mbiapo: error: {out / 'checkpoint.pt'}: needs the planner 'linear', "
                    f"which is not registered (registered by the plugin '{loaded}': pass "
                    f"--plugin {loaded}, or in Python call mbiapo.api.load_plugin('{loaded}') "
                    f"first)")


def test_a_plugin_value_estimator_trains_and_plans(loaded, tmp_path, capsys):
    out = tmp_path / "run"
    code, _, err = run_cli(capsys, "train", "--env", "InvertedPendulum-v5", "--value",
                           "optimistic", "--steps", "120", "--out", out, "value.bonus=0.5",
                           *TINY)
    assert code == 0 and "optimistic: bonus 0.5" in err, err
    code, out_text, err = run_cli(capsys, "plan", "--checkpoint", out, "--episodes", "1",
                                  "--json")
    assert code == 0 and "optimistic: bonus 0.5" in err, err
    assert json.loads(out_text)["actions"] > 0
    assert read_checkpoint(out)["plugins"] == {"value.kind": loaded}


def test_mppi_is_built_in_with_typed_settings(capsys):
    from mbiapo.config import compose

    cfg = compose("InvertedPendulum-v5", "mppi", overrides=["planner.temperature=0.5"])
    assert cfg.planner.temperature == 0.5 and cfg.planner.population == 100
    line = error_line(capsys, "evaluate", "--checkpoint", SHIPPED, "--planner", "mppi",
                      "planner.temperature=0")
    assert line == "mbiapo: error: planner.temperature must be > 0, got 0.0"


def test_bad_plugins_are_one_line(tmp_path, capsys):
    assert "cannot load plugin 'no_such_module': ModuleNotFoundError" in error_line(
        capsys, "evaluate", "--checkpoint", SHIPPED, "--plugin", "no_such_module")
    broken = tmp_path / "broken.py"
    broken.write_text("raise RuntimeError('oops')\n")
    assert error_line(capsys, "evaluate", "--plugin", broken, "--checkpoint", SHIPPED) == (
        f"mbiapo: error: cannot load plugin '{broken}': RuntimeError: oops")
    assert "file not found" in error_line(capsys, "evaluate", "--checkpoint", SHIPPED,
                                          "--plugin", tmp_path / "none.py")


def test_a_name_is_registered_once(loaded):
    from mbiapo.planners import register

    class Mine:
        trainable = False

    with pytest.raises(ValueError, match="already registered by mbiapo"):
        register("cem", Mine)
    with pytest.raises(ValueError, match=f"already registered by {loaded}"):
        register("shooting", Mine)
    with pytest.raises(TypeError, match="subclassing PlannerConfig"):
        register("other", Mine, config=dict)


def test_planner_names_come_from_the_registry_only():
    """No list of planner names outside the registrations (the issue's must-show)."""
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("needs the git checkout")
    found = subprocess.run(["git", "grep", "-nE", r"\"(direct|iterative|adam|cem)\"", "--",
                            "mbiapo", "planners", "models"], cwd=ROOT, capture_output=True,
                           text=True).stdout.splitlines()
    assert found and all(":register(" in line for line in found), found


def test_a_format_2_config_reads_its_old_planner_keys():
    """mbiapo 0.2 kept every planner's settings in one group (adam_lr, cem_*): the planner
    that has them now takes them under their new names; the others drop them."""
    saved = read_checkpoint(SHIPPED)
    assert saved["format_version"] == 2 and saved["config"]["planner"]["cem_samples"] == 100
    old = {**saved["config"], "planner": {**saved["config"]["planner"], "name": "cem",
                                          "cem_samples": 50, "cem_elites": 5}}
    planner = from_container(old).planner
    assert (planner.population, planner.elites, planner.smoothing) == (50, 5, 0.0)
    assert "cem_samples" not in planner and "hidden" not in planner
    assert "adam_lr" not in from_container(saved["config"]).planner


def test_a_plugin_q_network_trains_and_is_named_by_its_checkpoint(loaded, tmp_path, capsys):
    out = tmp_path / "run"
    code, _, err = run_cli(capsys, "train", "--env", "InvertedPendulum-v5", "--steps", "120",
                           "--out", out, "value.q_network=quadratic", "value.members=3", *TINY)
    assert code == 0, err
    payload = read_checkpoint(out)
    assert payload["plugins"] == {"value.q_network": loaded}
    assert payload["agent"]["q.proj"].shape == (3, 5, 8)
    code, _, err = run_cli(capsys, "evaluate", "--checkpoint", out, "--episodes", "1")
    assert code == 0, err
    Q_NETWORKS._entries.pop("quadratic")
    assert f"needs the Q network 'quadratic', which is not registered (registered by the " \
           f"plugin '{loaded}': pass --plugin {loaded}," in error_line(
               capsys, "evaluate", "--checkpoint", out, "--episodes", "1")


def test_installed_plugins_load_through_their_entry_point(plugin, monkeypatch):
    """A package declares its module in the mbiapo.plugins entry-point group."""
    class EntryPoint:
        value = "my_planners:unused"

    monkeypatch.syspath_prepend(str(plugin.parent))
    monkeypatch.setattr(registry, "entry_points",
                        lambda group: [EntryPoint()] if group == "mbiapo.plugins" else [])
    try:
        with registries_restored():
            registry.load_plugins([])
            assert PLANNERS.get("shooting").plugin == "my_planners"
    finally:
        sys.modules.pop("my_planners", None)
