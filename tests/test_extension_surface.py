"""What a researcher extending mbiapo relies on: analyses use the value estimator they name,
settings an analysis would ignore are refused, the Python API repeats itself given a seed,
and many episodes never mean many environments at once. Each defect's test failed on 0.5.0;
the repeat tests of planners that draw nothing when acting deterministically (direct,
iterative, adam, mppi-seq here) and the CLI one passed there too, and guard the fix."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from mbiapo import api, evaluate
from mbiapo.agent import Agent
from mbiapo.planners import PLANNERS
from mbiapo.value import ModelFreeValue, ValueConfig, ValueEstimator, register
from tests.helpers import count_environments, error_line, registries_restored, run_cli, tiny_config

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "mbiapo" / "pretrained" / "ip-iterative"
SHIFT = 100.0


def shifted(agent):
    """A registered estimator that learns nothing: the model-free estimate plus SHIFT."""
    model_free = ModelFreeValue(agent.q)
    return lambda obs, actions, beta: model_free(obs, actions, beta) + SHIFT


class Learned(ValueEstimator):
    def __init__(self, agent):
        super().__init__(ModelFreeValue(agent.q), ModelFreeValue(agent.q_target))
        self.extra = nn.Linear(agent.obs_dim, 1)


@pytest.fixture(scope="module")
def states(tmp_path_factory) -> Path:
    from mbiapo.cli import main

    path = tmp_path_factory.mktemp("states") / "states.h5"
    assert main(["states", "--checkpoint", str(SHIPPED), "--n", "8", "--out", str(path)]) == 0
    return path


def _compare(capsys, states, out, *extra) -> dict:
    code, stdout, err = run_cli(capsys, "compare", "--checkpoint", SHIPPED, "--states", states,
                                "--planners", "cem", "--iters", "3", "--json", "--out", out,
                                *extra)
    assert code == 0, err
    return json.loads(stdout)


def test_compare_plans_against_the_registered_estimator_it_names(capsys, states, tmp_path):
    with registries_restored():
        register("shifted", shifted, ValueConfig)
        mine = _compare(capsys, states, tmp_path / "a", "--value", "shifted")
        model_free = _compare(capsys, states, tmp_path / "b", "--value", "model-free")
    assert mine["value"] == "shifted"
    gained = mine["planners"]["cem"]["J_final"]["mean"] - \
        model_free["planners"]["cem"]["J_final"]["mean"]
    assert gained == pytest.approx(SHIFT, abs=1e-3)  # CEM ranks the same; J is shifted


def test_an_untrained_learned_estimator_is_one_error_line(capsys, states, tmp_path):
    with registries_restored():
        register("learned", Learned, ValueConfig)
        line = error_line(capsys, "compare", "--checkpoint", SHIPPED, "--states", states,
                          "--planners", "cem", "--iters", "2", "--value", "learned",
                          "--out", tmp_path / "c")
    assert "learns parameters of its own" in line and "--value learned" in line


def test_compare_labels_only_the_iterations_it_ran(capsys, states, tmp_path):
    summary = _compare(capsys, states, tmp_path / "d")
    assert summary["iters"] == 3
    assert "J_at_1" in summary["planners"]["cem"] and "J_at_5" not in summary["planners"]["cem"]


def test_an_override_an_analysis_would_ignore_is_refused(capsys, states, tmp_path):
    line = error_line(capsys, "compare", "--checkpoint", SHIPPED, "--states", states,
                      "--planners", "cem", "--iters", "3", "--out", tmp_path / "e",
                      "planner.iters=50")
    assert "--iters" in line and "planner.iters" in line
    assert not (tmp_path / "e").exists()


def _agent(planner: str) -> Agent:
    cfg = tiny_config(planner, extra=["value.kind=model-based", "env.max_episode_steps=15"])
    torch.manual_seed(0)
    return Agent(cfg, 4, 1)


@pytest.mark.parametrize("name", PLANNERS.names())
def test_api_evaluate_repeats_with_a_seed_for_every_planner(name):
    """Three calls in one process, with the process's generators moved on between them."""
    trained = PLANNERS.get(name).build.trainable
    agent = _agent(name if trained else "direct")
    overrides = ["planner.iters=2"] + (["planner.population=16", "planner.elites=4",
                                        "planner.prior_samples=2"]
                                       if name in ("mppi-seq", "cem-seq") else [])
    overrides = [] if trained else overrides
    if name == "adam-seq":
        overrides = ["planner.iters=2", "planner.population=4", "planner.prior_samples=1"]
    runs = []
    for _ in range(3):
        runs.append(api.evaluate(agent, episodes=2, seed=5, planner=None if trained else name,
                                 overrides=overrides)["returns"])
        torch.rand(7), np.random.rand(3)  # what a notebook does between calls
    assert runs[0] == runs[1] == runs[2]


def test_many_episodes_keep_a_bounded_number_of_environments(monkeypatch):
    seen = count_environments(monkeypatch, evaluate)
    monkeypatch.setattr(evaluate, "SIDE_BY_SIDE", 3)
    agent = _agent("direct")
    batched = evaluate.run_episodes(agent, agent.cfg.env.id, 8, 0, max_episode_steps=15)
    assert seen["most"] == 3 and not seen["alive"]
    one_by_one = evaluate.run_episodes(agent, agent.cfg.env.id, 8, 0, batched=False,
                                       max_episode_steps=15)
    assert batched["returns"] == pytest.approx(one_by_one["returns"])
    assert len(batched["returns"]) == 8 and len(set(batched["returns"])) > 1


def test_a_seeded_evaluation_leaves_the_callers_generators_alone():
    agent = _agent("direct")
    torch.manual_seed(3)
    np.random.seed(3)
    before_torch, before_numpy = torch.get_rng_state(), np.random.get_state()[1].copy()
    api.evaluate(agent, episodes=1, seed=5, planner="cem", overrides=["planner.iters=2"])
    assert torch.equal(torch.get_rng_state(), before_torch)
    assert (np.random.get_state()[1] == before_numpy).all()


ENV_PLUGIN = '''
import gymnasium
gymnasium.register("ShortPendulum-v0", max_episode_steps=20,
                   entry_point="gymnasium.envs.mujoco.inverted_pendulum_v5:InvertedPendulumEnv")
'''


def test_an_environment_a_plugin_registers_is_recorded_and_needed(tmp_path, capsys):
    """Train on a plugin's environment; the checkpoint names the plugin, and loading it in a
    process without the plugin is one line that says how to load it (CLI and Python)."""
    import gymnasium

    from mbiapo import registry

    plugin = tmp_path / "short_envs.py"
    plugin.write_text(ENV_PLUGIN)
    out = tmp_path / "run"
    try:
        code, _, err = run_cli(capsys, "train", "--plugin", plugin, "--env", "ShortPendulum-v0",
                               "--steps", "60", "--out", out, "train.warmup_steps=40",
                               "train.eval_every=60", "train.eval_episodes=1",
                               "train.batch_size=16", "planner.hidden=16", "value.hidden=16")
        assert code == 0, err
        rows = api.metrics(out)
        assert [row["step"] for row in rows] == [60] and rows[0]["eval_return_mean"] > 0
        from mbiapo.checkpoint import read_checkpoint

        assert read_checkpoint(out)["plugins"] == {"env.id": str(plugin)}
    finally:
        gymnasium.registry.pop("ShortPendulum-v0", None)
        registry.ENV_PLUGINS.pop("ShortPendulum-v0", None)
    line = error_line(capsys, "evaluate", "--checkpoint", out, "--episodes", "1")
    assert "needs the environment 'ShortPendulum-v0'" in line and f"--plugin {plugin}" in line
    with pytest.raises(Exception, match="load_plugin"):
        api.load(out)
    try:
        api.load_plugin(str(plugin))
        assert api.load(out).cfg.env.id == "ShortPendulum-v0"
    finally:
        gymnasium.registry.pop("ShortPendulum-v0", None)
        registry.ENV_PLUGINS.pop("ShortPendulum-v0", None)


def test_a_plugin_that_exits_is_one_error_line(tmp_path, capsys):
    plugin = tmp_path / "leaves.py"
    plugin.write_text("import sys\nsys.exit(3)\n")
    line = error_line(capsys, "evaluate", "--plugin", plugin, "--checkpoint", SHIPPED)
    assert "called sys.exit(3)" in line and str(plugin) in line


def test_a_relative_plugin_path_is_recorded_absolute(tmp_path, monkeypatch):
    from mbiapo import registry

    (tmp_path / "rel_plugin.py").write_text(
        "from mbiapo.planners import register\nfrom mbiapo.planners.cem import CEMPlanner, "
        "CEMConfig\nregister('cem-again', CEMPlanner, CEMConfig)\n")
    monkeypatch.chdir(tmp_path)
    with registries_restored():
        registry.load_plugin("rel_plugin.py")
        assert PLANNERS.get("cem-again").plugin == str(tmp_path / "rel_plugin.py")


class Silent:
    """Plans one uniform action and never calls callback (the docs once showed one)."""

    trainable = False
    iters = 1

    def __init__(self, obs_dim, act_dim, iters=1):
        self.act_dim = act_dim

    def plan(self, objective, obs, iters=None, init=None, record=True, callback=None,
             train_rows=None):
        from mbiapo.planners import Plan

        mu = torch.zeros(obs.shape[0], self.act_dim)
        return Plan(mu, mu - 1.0)


class NoSurrogate(nn.Module):
    """Trainable, yet returns no surrogate: nothing could train it."""

    trainable = True
    iters = 1

    def __init__(self, obs_dim, act_dim, iters=1):
        super().__init__()
        self.net = nn.Linear(obs_dim, 2 * act_dim)

    def plan(self, objective, obs, iters=None, init=None, record=True, callback=None,
             train_rows=None):
        from mbiapo.planners import Plan

        mu, log_std = self.net(obs).chunk(2, -1)
        if callback is not None:
            callback(0, mu.detach(), log_std.detach())
        return Plan(mu, log_std)


def _failure(capsys, *argv) -> str:
    """Exit code 2, no traceback, and the error as the last line of stderr (after whatever
    progress bars the command had drawn and cleared)."""
    code, out, err = run_cli(capsys, *argv)
    assert code == 2 and out == "" and "Traceback" not in err, err
    last = err.strip().splitlines()[-1].strip()
    assert last.startswith("mbiapo: error: "), err
    return last


def test_a_planner_that_never_calls_callback_is_one_line_in_the_analyses(capsys, states,
                                                                         tmp_path):
    from mbiapo.planners import register as register_planner

    with registries_restored():
        register_planner("silent", Silent)
        for command in (["compare", "--iters", "2"], ["gap", "--steps", "2"]):
            line = _failure(capsys, command[0], "--checkpoint", SHIPPED, "--states", states,
                              "--planners", "silent", *command[1:], "--out",
                              tmp_path / command[0])
            assert "never called callback" in line
            assert not (tmp_path / command[0]).exists()


def test_a_trainable_planner_without_a_surrogate_stops_before_anything_moves(capsys,
                                                                             tmp_path):
    from mbiapo.planners import register as register_planner

    out = tmp_path / "run"
    tiny = ["train.warmup_steps=40", "train.batch_size=16", "value.hidden=16",
            "env.max_episode_steps=20", "train.eval_every=100"]
    with registries_restored():
        register_planner("no-surrogate", NoSurrogate)
        line = _failure(capsys, "train", "--env", "InvertedPendulum-v5", "--planner",
                        "no-surrogate", "--steps", "60", "--out", out, *tiny)
        assert "no surrogate" in line
        code, _, err = run_cli(capsys, "train", "--env", "InvertedPendulum-v5", "--planner",
                               "direct", "--steps", "60", "--out", out, *tiny)
    assert code == 0, err  # the folder of the failed start takes a new run


@pytest.mark.parametrize("command", [["evaluate", "--planner", "mppi", "planner.iters=3"],
                                     ["plan", "--planner", "cem", "planner.iters=3"]])
def test_two_cli_runs_with_one_seed_print_the_same_json(capsys, command):
    """Timings aside; the process's generators are moved on between the runs."""
    printed = []
    for _ in range(2):
        code, out, err = run_cli(capsys, command[0], "--checkpoint", SHIPPED, "--episodes",
                                 "2", "--seed", "4", "--json", *command[1:])
        assert code == 0, err
        printed.append({k: v for k, v in json.loads(out).items()
                        if "latency" not in k and "seconds" not in k})
        torch.rand(5), np.random.rand(5)
    assert printed[0] == printed[1] and printed[0]["returns"]


def test_a_training_callback_sees_every_row_and_can_stop_the_run(tmp_path):
    cfg = tiny_config("direct", extra=["train.steps=150", "train.eval_every=50",
                                       "train.eval_episodes=1", "env.max_episode_steps=20"])
    seen = []
    last = api.train(cfg, tmp_path / "run", callback=lambda row: seen.append(row["step"])
                     or row["step"] < 100)
    assert seen == [50, 100] and last["step"] == 100
    from mbiapo.checkpoint import read_checkpoint

    assert read_checkpoint(tmp_path / "run")["step"] == 100  # saved where it stopped
    assert api.resume(tmp_path / "run")["step"] == 150
    assert [row["step"] for row in api.metrics(tmp_path / "run")] == [50, 100, 150]
