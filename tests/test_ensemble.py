"""World-model ensembles (issue 24): bootstrap members, probabilistic variances, elites,
uncertainty and its penalty, termination in rollouts, E = 1 against mbiapo 0.3, and a
plugin value estimator that learns."""

import csv
import math
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from torch import nn

from mbiapo.agent import Agent
from mbiapo.checkpoint import load_agent
from mbiapo.errors import MbiapoError
from mbiapo.models.world_model import Prediction, WorldModel, bootstrap_rows
from mbiapo.value import (
    ModelBasedValue,
    ModelFreeValue,
    ValueConfig,
    ValueEstimator,
    register,
)
from tests.helpers import registries_restored

FORMAT3 = Path(__file__).parent / "data" / "format3"


def _mb(tiny_cfg, obs_dim=4, act_dim=1, **settings) -> Agent:
    cfg = tiny_cfg("direct", **{"value.kind": "model-based", "value.model_hidden": 32,
                                "value.rollout_hidden": 32, **settings})
    return Agent(cfg, obs_dim, act_dim)


def _batch(n=64, obs_dim=4, act_dim=1, seed=0) -> dict:
    g = torch.Generator().manual_seed(seed)
    obs = torch.randn(n, obs_dim, generator=g)
    act = torch.rand(n, act_dim, generator=g) * 2 - 1
    return {"obs": obs, "act": act, "rew": obs[:, 0] - act[:, 0] ** 2,
            "next_obs": obs + 0.1 * act.sum(-1, keepdim=True), "done": torch.zeros(n),
            "model_weight": (torch.arange(n) % 10 != 0).float()}


# ------------------------------------------------------------------ (a) bootstrap members
def test_each_member_trains_on_its_own_resample_of_about_63_percent_of_the_rows():
    torch.manual_seed(0)
    rows = bootstrap_rows(5, 4000)
    unique = [r.unique().numel() / 4000 for r in rows]
    assert all(abs(u - (1 - 1 / math.e)) < 0.02 for u in unique), unique
    for i in range(5):
        for j in range(i):
            assert not torch.equal(rows[i].sort().values, rows[j].sort().values)


def _identical_members(model: WorldModel) -> None:
    """Make every member a copy of member 0 (parameters laid out network head * E + member)."""
    e = model.members
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.startswith("nets."):
                view = p.view(3, e, *p.shape[1:])
                view.copy_(view[:, :1].expand_as(view))
            elif name == "dynamics_log_std" or name == "reward_log_std":
                p.copy_(p[:1].expand_as(p))


def _member_spread(model: WorldModel) -> float:
    e = model.members
    w = model.nets[0].weight.view(3, e, *model.nets[0].weight.shape[1:])
    return (w - w[:, :1]).abs().max().item()


def test_members_that_start_equal_part_ways_because_their_data_differ(tiny_cfg):
    agent = _mb(tiny_cfg, **{"value.model_members": 3})
    model, batch = agent.estimator.model, _batch()
    # the control: a step with every member on the whole batch keeps equal members equal
    _identical_members(model)
    loss = model.loss(batch["obs"], batch["act"], batch["rew"], batch["next_obs"],
                      batch["done"], batch["model_weight"], torch.arange(64).expand(3, -1))
    control = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss.backward()
    control.step()
    assert _member_spread(model) == 0
    # the estimator's step gives each member its own bootstrap: they part ways
    _identical_members(model)
    agent.estimator.update(batch)
    assert _member_spread(model) > 0


# ------------------------------------------------------------------ (b) probabilistic model
def test_probabilistic_model_learns_noise_that_grows_with_the_input_within_its_bounds():
    torch.manual_seed(0)
    model = WorldModel(1, 1, hidden=64, layers=2, layer_norm=False, probabilistic=True)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)

    def true_std(a):
        return 0.05 + 0.2 * (a + 1)  # 0.05 at a = -1 up to 0.45 at a = 1

    def sample(n):
        obs, act = torch.randn(n, 1), torch.rand(n, 1) * 2 - 1
        next_obs = obs + 0.5 * act + true_std(act) * torch.randn(n, 1)
        return obs, act, torch.zeros(n), next_obs

    obs, act, rew, next_obs = sample(20_000)
    model.update_statistics(obs, rew, next_obs)
    for _ in range(2500):
        o, a, r, n = sample(256)
        loss = model.loss(o, a, r, n, torch.zeros(256), torch.ones(256))
        opt.zero_grad()
        loss.backward()
        opt.step()
    probe = torch.tensor([[-0.7], [0.0], [0.7]])
    std = model.member_std(torch.zeros(3, 1), probe)[0, :, 0]
    torch.testing.assert_close(std, true_std(probe[:, 0]), rtol=0.2, atol=0)
    # far from the data the log-variance stays inside its learned soft bounds
    far = model._run(model._input(torch.full((5, 1), 50.0), torch.full((5, 1), 40.0))[None],
                     torch.tensor([0]))
    log_std, rew_log_std = model._log_stds(far, torch.tensor([0]))
    logvar = torch.cat([2 * log_std, 2 * rew_log_std[..., None]], -1)
    assert (logvar <= model.max_logvar).all()  # the upper bound is applied last: a hard cap
    assert (logvar > model.min_logvar - 0.01).all()  # soft: within softplus's overshoot


# ------------------------------------------------------------------ (c) disagreement
def test_members_disagree_more_far_from_the_data_than_on_it():
    torch.manual_seed(0)
    model = WorldModel(2, 1, hidden=64, members=5)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)

    def sample(n):
        obs, act = torch.rand(n, 2) * 2 - 1, torch.rand(n, 1) * 2 - 1
        return obs, act, obs.sum(-1), obs + 0.3 * torch.sin(3 * obs) * act

    o, _, r, n = sample(5000)
    model.update_statistics(o, r, n)
    for _ in range(800):
        o, a, r, n = sample(128)
        loss = model.loss(o, a, r, n, torch.zeros(128), torch.ones(128),
                          bootstrap_rows(5, 128))
        opt.zero_grad()
        loss.backward()
        opt.step()
    o, a, _, _ = sample(200)
    on_data = model(o, a, uncertainty="disagreement").uncertainty.mean()
    far = model(o + 6.0, a, uncertainty="disagreement").uncertainty.mean()
    assert far > 3 * on_data, (far, on_data)


# ------------------------------------------------------------------ (d) elites
def test_elites_are_the_lowest_held_out_error_members_and_rollouts_touch_only_them(tiny_cfg):
    agent = _mb(tiny_cfg, **{"value.model_members": 4, "value.model_elites": 2})
    estimator, model = agent.estimator, agent.estimator.model
    estimator._track_heldout(torch.tensor([0.3, 0.1, 0.4, 0.2]))
    assert model.elites.tolist() == [1, 3]
    used = []
    run = model._run
    model._run = lambda x, members: used.append(members) or run(x, members)
    obs, actions = torch.randn(6, 4), torch.rand(6, 5, 1) * 2 - 1
    agent.value(obs, actions, 1.0)  # one member per trajectory
    estimator.estimate.dynamics.penalty = 0.5
    agent.value(obs, actions, 1.0)  # every elite on every row, for the uncertainty
    touched = {int(m) for members in used for m in members}
    assert used and touched == {1, 3}
    # learning re-chooses them from each member's held-out error, and keeps only the elites
    model._run = run
    for seed in range(3):
        estimator.update(_batch(seed=seed))
    errors = estimator.heldout_error / estimator.heldout_weight
    assert model.elites.tolist() == errors.argsort()[:2].tolist()


def test_a_rollout_keeps_each_trajectory_on_one_member_and_uses_the_elites_equally():
    torch.manual_seed(0)
    model = WorldModel(3, 2, hidden=16, members=3)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.5 * torch.randn_like(p))
    assignment = model.assign(10)
    counts = torch.bincount(assignment.member_of_row, minlength=3)
    assert counts.max() - counts.min() <= 1
    single = WorldModel(3, 2, hidden=16, members=3, elites=1)  # the same members, one elite
    single.load_state_dict({k: v for k, v in model.state_dict().items() if k != "elites"},
                           strict=False)
    s, a = torch.randn(10, 3), torch.rand(10, 2) * 2 - 1
    for _ in range(2):  # two steps of one rollout: the same member per row
        pred = model(s, a, assignment)
        for member in range(3):
            single.elites.fill_(member)
            alone = single(s, a)
            rows = assignment.member_of_row == member
            torch.testing.assert_close(pred.next_obs[rows], alone.next_obs[rows])
            torch.testing.assert_close(pred.reward[rows], alone.reward[rows])
        # the all-elites path (taken with an uncertainty) picks the same member per row
        both = model(s, a, assignment, "disagreement")
        torch.testing.assert_close(both.next_obs, pred.next_obs)
        s = pred.next_obs


# ------------------------------------------------------------------ (e) E = 1 is 0.3.0
def test_one_member_reproduces_0_3_0_values_gradients_and_update():
    agent, payload = load_agent(FORMAT3 / "direct-model-based.pt")
    assert payload["format_version"] == 3 and agent.cfg.value.model_members == 1
    expected = torch.load(FORMAT3 / "direct-model-based.expected.pt")
    actions = expected["actions"].clone().requires_grad_()
    torch.manual_seed(1)
    value = agent.value(expected["obs"], actions, 1.0)
    (grad,) = torch.autograd.grad(value.sum(), actions)
    torch.testing.assert_close(value, expected["value"], rtol=0, atol=0)
    torch.testing.assert_close(grad, expected["grad"], rtol=0, atol=0)
    with torch.no_grad():
        torch.manual_seed(2)
        target = agent.target_value(expected["obs"], expected["actions"], 1.0)
        pred = agent.estimator.model(expected["obs"], expected["actions"][:, 0])
    torch.testing.assert_close(target, expected["target"], rtol=0, atol=0)
    for key in ("next_obs", "reward", "cont"):
        torch.testing.assert_close(getattr(pred, key), expected[key], rtol=0, atol=0)
    torch.manual_seed(3)
    metrics = agent.update(expected["batch"])
    assert metrics.keys() == expected["metrics"].keys()
    for key, value in expected["metrics"].items():
        torch.testing.assert_close(metrics[key], value, rtol=0, atol=0)


# ------------------------------------------------------------------ (f), (g) by hand
class _ToyModel:
    """s' = s + a, r = s - a^2, u = 0.5 + |s|, cont from a table per step; one member."""

    def __init__(self, cont=(1.0, 1.0, 1.0)):
        self.cont, self.calls = cont, []

    def assign(self, rows, device=None):
        return None

    def __call__(self, s, a, assignment=None, uncertainty=None):
        t = len(self.calls)
        self.calls.append(s)
        u = None if uncertainty is None else (0.5 + s.abs()).sum(-1)
        return Prediction(s + a, (s - a ** 2).sum(-1), torch.full(s.shape[:-1], self.cont[t]),
                          u)


class _ToyPolicy(nn.Module):
    """a' = -s/2 with a near-deterministic tanh-Gaussian (log std -20)."""

    def forward(self, s):
        return torch.atanh((-s / 2).clamp(-0.999, 0.999)), torch.full_like(s, -20.0)


def _toy_value(model, lam=1.0, horizon=3, penalty=0.0, gamma=0.9):
    q = lambda s, a: (s + a).sum(-1)[None]  # noqa: E731  one member: Q = s + a
    # alpha = 0: V = Q, so the sums by hand need no entropy terms
    return ModelBasedValue(q, model, _ToyPolicy(), torch.tensor(-math.inf), gamma, lam,
                           horizon, "disagreement", penalty)


@pytest.mark.parametrize("lam", [1.0, 0.6])
def test_the_penalty_lowers_the_value_by_lambda_times_the_discounted_uncertainties(lam):
    obs, act = torch.tensor([[0.4]]), torch.tensor([[[0.3]]])
    plain = _toy_value(_ToyModel(), lam)(obs, act, 0.0)
    model = _ToyModel()
    penalized = _toy_value(model, lam, penalty=0.7)(obs, act, 0.0)
    states = [s.reshape(-1)[0].item() for s in model.calls]  # s_0, s_1, s_2
    u = [0.5 + abs(s) for s in states]
    weights = [(0.9 * lam) ** t for t in range(3)]  # Retrace weights, nothing terminates
    drop = 0.7 * sum(w * x for w, x in zip(weights, u))
    torch.testing.assert_close(plain - penalized, torch.tensor([[drop]]), rtol=1e-5, atol=1e-6)
    # by hand for lam = 1: s = 0.4, 0.7, 0.35 -> u = 0.9, 1.2, 0.85
    if lam == 1.0:
        assert drop == pytest.approx(0.7 * (0.9 + 0.9 * 1.2 + 0.81 * 0.85), rel=1e-5)


def test_nothing_is_rewarded_after_a_predicted_termination_and_its_own_step_counts():
    obs, act = torch.tensor([[0.4]]), torch.tensor([[[0.3]]])
    # terminates at the first step: r_0 = 0.4 - 0.09 = 0.31, nothing after (no bootstrap,
    # no later reward, no later penalty)
    first = _toy_value(_ToyModel(cont=(0.0, 1.0, 1.0)), penalty=0.7)(obs, act, 0.0)
    torch.testing.assert_close(first, torch.tensor([[0.31 - 0.7 * 0.9]]))
    # terminates at the second step: s_1 = 0.7, a_1 = -0.35, r_1 = 0.7 - 0.1225 = 0.5775
    second = _toy_value(_ToyModel(cont=(1.0, 0.0, 1.0)))(obs, act, 0.0)
    torch.testing.assert_close(second, torch.tensor([[0.31 + 0.9 * 0.5775]]), rtol=1e-4,
                               atol=1e-5)


def test_the_penalty_applies_to_planning_and_to_critic_targets(tiny_cfg):
    agent = _mb(tiny_cfg, **{"value.model_members": 3, "value.uncertainty_penalty": 0.0})
    for update_seed in range(2):
        agent.estimator.update(_batch(seed=update_seed))
    obs, actions = torch.randn(4, 4), torch.rand(4, 3, 1) * 2 - 1
    values = {}
    for penalty in (0.0, 2.0):
        agent.value.dynamics.penalty = agent.target_value.dynamics.penalty = penalty
        with torch.no_grad():
            torch.manual_seed(5)
            plan_value = agent.value(obs, actions, 1.0)
            torch.manual_seed(5)
            target_value = agent.target_value(obs, actions, 1.0)
        values[penalty] = (plan_value, target_value)
    assert (values[2.0][0] < values[0.0][0]).all() and (values[2.0][1] < values[0.0][1]).all()


# ------------------------------------------------------------------ config checks
@pytest.mark.parametrize("settings, message", [
    ({"value.model_members": 3, "value.model_elites": 4}, "value.model_elites must lie in"),
    ({"value.model_members": 0}, "value.model_members must be >= 1"),
    ({"value.uncertainty": "max_sigma"}, "needs value.model_probabilistic=true"),
    ({"value.uncertainty": "variance"}, "value.uncertainty must be one of: max_sigma, "),
    ({"value.uncertainty_penalty": 1.0}, "needs at least 2 elites"),
    ({"value.uncertainty_penalty": -1.0, "value.model_members": 2}, "must be >= 0"),
])
def test_ensemble_settings_no_model_can_use_are_one_error(tiny_cfg, settings, message):
    with pytest.raises(MbiapoError, match=message):
        tiny_cfg("direct", **{"value.kind": "model-based", **settings})


def test_model_keys_belong_to_the_model_based_config_only(tiny_cfg):
    with pytest.raises(MbiapoError, match="unknown config key 'value.horizon'"):
        tiny_cfg("direct", **{"value.horizon": 3})
    assert tiny_cfg("direct", **{"value.kind": "model-based"}).value.horizon == 2


# ------------------------------------------------------------------ (h) a learned plugin
@dataclass
class BonusConfig(ValueConfig):
    bonus_lr: float = 1e-2


class LearnedBonus(ValueEstimator):
    """Q-hat plus a state bonus b(s) regressed on the rewards: its own parameters, its own
    optimizer and learning step, checkpointed with the agent."""

    def __init__(self, agent):
        q = ModelFreeValue(agent.q)
        super().__init__(self._plus_bonus(q), self._plus_bonus(ModelFreeValue(agent.q_target)))
        self.bonus = nn.Linear(agent.obs_dim, 1)
        self.lr = agent.cfg.value.bonus_lr

    def _plus_bonus(self, q):
        return lambda obs, actions, beta: q(obs, actions, beta) + self.bonus(
            obs[: actions.shape[0]]).detach()

    def setup_optimizers(self, lr):
        self._optimizers = {"bonus": torch.optim.Adam(self.bonus.parameters(), lr=self.lr)}

    def update(self, batch, planned=None):
        loss = (self.bonus(batch["obs"])[:, 0] - batch["rew"]).square().mean()
        opt = self._optimizers["bonus"]
        opt.zero_grad()
        loss.backward()
        opt.step()
        return {"bonus_loss": loss.detach()}


def test_a_plugin_estimator_with_its_own_parameters_learns_and_reloads(tmp_path, tiny_cfg):
    from mbiapo.train import start_run

    with registries_restored():
        register("learned-bonus", LearnedBonus, BonusConfig)
        cfg = tiny_cfg("direct", **{"value.kind": "learned-bonus", "train.steps": 150})
        trainer = start_run(cfg, tmp_path / "run")
        initial = {k: v.clone() for k, v in trainer.agent.estimator.state_dict().items()}
        trainer.run()
        trained = trainer.agent.estimator
        assert not torch.equal(initial["bonus.weight"], trained.bonus.weight)
        with open(tmp_path / "run" / "metrics.csv", newline="") as f:
            rows = list(csv.DictReader(f))
        assert rows and all(float(row["bonus_loss"]) >= 0 for row in rows)
        agent, _ = load_agent(tmp_path / "run")
        assert isinstance(agent.estimator, LearnedBonus)
        torch.testing.assert_close(agent.estimator.bonus.weight, trained.bonus.weight)
        saved = trained.optimizers()["bonus"].state_dict()["state"]
        loaded = agent.estimator.optimizers()["bonus"].state_dict()["state"]
        torch.testing.assert_close(loaded[0]["exp_avg"], saved[0]["exp_avg"])
