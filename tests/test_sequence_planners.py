"""Sequence planners (MPPI, CEM with iCEM's options, Adam through the model): a known optimum
(LQR), the anchors' pitfalls (warm start, clean episodes, NaN scores, bounds, termination),
the prior, and each setting changing what it claims."""

import math

import numpy as np
import pytest
import torch

from mbiapo.errors import MbiapoError
from mbiapo.models.world_model import Prediction
from mbiapo.objective import SequenceObjective
from mbiapo.planners import PLANNERS, sequence_planners
from mbiapo.planners.cem_sequence import colored_noise

SEQ = ("mppi-seq", "cem-seq", "adam-seq")


class Toy:
    """Differentiable dynamics given by ``fn(s, a) -> Prediction``; remembers the actions
    of every step it ran, and the rows of every rollout it began."""

    differentiable = True

    def __init__(self, fn):
        self.fn, self.actions, self.rows = fn, [], []

    def begin(self, obs):
        self.rows.append(obs.shape[0])

        def step(s, a):
            self.actions.append(a.detach().clone())
            return self.fn(s, a)

        return step

    def sync(self, envs):
        pass


class Objective:
    """Just the sequence part of an agent's objective (planners called with record=False
    use nothing else)."""

    alpha, act_dim = 0.0, 1

    def __init__(self, sequence, act_dim=1):
        self.sequence, self.act_dim = sequence, act_dim


def build(name, **settings):
    entry = PLANNERS.get(name)
    defaults = {"obs_dim": 2, "act_dim": 1}
    return entry.build(**(defaults | settings))


def plan(planner, sequence, obs, init=None, iters=None):
    return planner.plan(Objective(sequence, planner.act_dim), obs, iters, init, record=False)


# ------------------------------------------------------------------------------ known optimum
A = torch.tensor([[1.0, 0.1], [0.0, 1.0]], dtype=torch.float64)  # a double integrator
B = torch.tensor([[0.0], [0.1]], dtype=torch.float64)
Q = torch.eye(2, dtype=torch.float64)
R = torch.tensor([[1.0]], dtype=torch.float64)


def riccati() -> tuple[np.ndarray, np.ndarray]:
    """Infinite-horizon discrete LQR (gamma = 1) by fixed-point iteration in numpy:
    P = Q + A'PA - A'PB (R + B'PB)^-1 B'PA, gain K = (R + B'PB)^-1 B'PA."""
    a, b, q, r = (x.numpy() for x in (A, B, Q, R))
    p = q.copy()
    for _ in range(5000):
        k = np.linalg.solve(r + b.T @ p @ b, b.T @ p @ a)
        p = q + a.T @ p @ (a - b @ k)
    return p, np.linalg.solve(r + b.T @ p @ b, b.T @ p @ a)


def lqr_objective(obs):
    """Reward -(s'Qs + a'Ra) and terminal value -s'Ps: any horizon's optimal first action is
    the infinite-horizon LQR action -Ks."""
    p, _ = riccati()
    p = torch.as_tensor(p)

    def fn(s, a):
        cost = (s @ Q * s).sum(-1) + (a @ R * a).sum(-1)
        return Prediction(s @ A.T + a @ B.T, -cost, torch.ones_like(cost))

    return SequenceObjective(obs, Toy(fn), 1.0, terminal=lambda s: -(s @ p * s).sum(-1))


LQR_SETTINGS = {
    # enough samples and iterations to resolve the optimum: on this problem, an action 0.02
    # off costs (R + B'PB) 0.02^2 = 5e-4 of score, about what 64 elites' refit still
    # averages over
    "mppi-seq": {"iters": 20, "population": 1024, "elites": 64, "temperature": 0.01,
                 "prior_samples": 0, "init_std": 1.0},
    "cem-seq": {"iters": 20, "population": 1024, "elites": 64, "prior_samples": 0,
                "init_std": 1.0},
    "adam-seq": {"iters": 300, "population": 4, "prior_samples": 0, "lr": 0.05},
}
LQR_TOLERANCE = {"mppi-seq": 0.03, "cem-seq": 0.03, "adam-seq": 1e-3}
"""|first action - LQR action|: the sampling planners end with a std floor of 0.05 around a
mean of finitely many elites (0.03 is ~10% of the largest action here); gradient ascent
converges to the optimum of the (tanh-parameterized, smooth) score itself."""


@pytest.mark.parametrize("name", SEQ)
def test_first_action_matches_lqr(name):
    torch.set_default_dtype(torch.float64)
    try:
        obs = torch.tensor([[0.3, 0.0], [0.0, 0.3], [-0.25, 0.15]])
        planner = build(name, horizon=10, **LQR_SETTINGS[name])
        result = plan(planner, lqr_objective(obs), obs)
        _, k = riccati()
        lqr = -(obs.numpy() @ k.T)
        assert np.abs(lqr).max() < 0.6  # well inside the bounds: tanh barely bends it
        first = torch.tanh(result.mu).numpy()
        assert np.abs(first - lqr).max() < LQR_TOLERANCE[name], (first, lqr)
    finally:
        torch.set_default_dtype(torch.float32)


# ------------------------------------------------------------------------------ pitfalls
def constant_objective(obs, reward=0.0):
    def fn(s, a):
        r = torch.full(a.shape[:-1], reward)
        return Prediction(s, r, torch.ones_like(r))

    toy = Toy(fn)
    return SequenceObjective(obs, toy, 0.99), toy


@pytest.mark.parametrize("name", ["mppi-seq", "cem-seq"])
def test_warm_start_is_the_previous_plan_shifted(name):
    obs = torch.zeros(2, 2)
    planner = build(name, horizon=4, population=2000, elites=10, iters=1, prior_samples=0,
                    init_std=0.1)
    sequence, toy = constant_objective(obs)
    first = plan(planner, sequence, obs)
    mu = first.next_init[0]
    assert torch.equal(first.next_init[1], torch.full_like(mu, math.log(0.1)))
    # the next search samples around the shifted plan (t = 0..2 from the last plan's 1..3)
    start = torch.randn(2, 4, 1)
    toy.actions.clear()
    plan(planner, sequence, obs, init=(start, torch.full_like(start, math.log(0.1))))
    sampled = torch.stack([torch.atanh(a) for a in toy.actions[:4]], 1)  # (B N, H, A)
    centre = sampled.reshape(2, 2000, 4, 1).mean(1)
    assert torch.allclose(centre, start, atol=0.02)
    shifted = planner.shifted(start)[0]
    assert torch.equal(shifted[:, :3], start[:, 1:])
    assert torch.equal(shifted[:, 3], torch.zeros(2, 1))


def test_episodes_carry_the_plan_and_start_clean(tiny_cfg):
    """run_episodes passes each plan's next_init to the next step of the same episode, and
    nothing to an episode's first step."""
    from mbiapo.agent import Agent
    from mbiapo.evaluate import run_episodes
    from mbiapo.planners.base import Plan

    class Recorder:
        trainable, iters = False, 1

        def __init__(self):
            self.inits, self.calls = [], 0

        def plan(self, objective, obs, iters=None, init=None, record=True, callback=None,
                 train_rows=None):
            self.calls += 1
            self.inits.append(None if init is None else init[0][:, 0].tolist())
            zeros = obs.new_zeros(obs.shape[0], 1)
            marker = torch.full((obs.shape[0], 1), float(self.calls))
            return Plan(zeros, zeros, next_init=(marker, marker))

    agent = Agent(tiny_cfg("direct"), 4, 1)
    recorder = Recorder()
    run_episodes(agent, "InvertedPendulum-v5", 2, 0, recorder, batched=False,
                 max_episode_steps=3)
    assert recorder.inits == [None, [1.0], [2.0], None, [4.0], [5.0]]


@pytest.mark.parametrize("name", SEQ)
def test_nan_scores_rank_last(name):
    """Sequences whose first action is positive score NaN, the others -5 or less (best at
    -0.5): every plan must pick a negative first action (NaN must not outrank negative
    scores)."""
    def fn(s, a):
        r = torch.where(a[..., 0] > 0, torch.nan, -5.0 - (a[..., 0] + 0.5).square())
        return Prediction(s, r, torch.ones_like(r))

    obs = torch.zeros(3, 2)
    sequence = SequenceObjective(obs, Toy(fn), 0.99)
    scores = sequence.score(torch.tensor([[[[0.5]], [[-0.5]]]]).expand(3, 2, 1, 1))
    assert (scores[:, 0] < scores[:, 1]).all() and torch.isfinite(scores).all()
    settings = {"iters": 3, "horizon": 1, "prior_samples": 0}
    if name != "adam-seq":
        settings |= {"population": 64, "elites": 8}
    else:
        settings |= {"population": 8, "init_std": 1.0}
    result = plan(build(name, **settings), sequence, obs)
    assert (result.mu < 0).all(), result.mu


@pytest.mark.parametrize("name", SEQ)
def test_actions_stay_in_bounds(name):
    """A reward that grows without bound in the action: every action the model sees and
    the first action returned lie in [-1, 1]."""
    def fn(s, a):
        r = 1000.0 * a.sum(-1)
        return Prediction(s, r, torch.ones_like(r))

    toy = Toy(fn)
    obs = torch.zeros(2, 2)
    result = plan(build(name, horizon=3, init_std=2.0, iters=5, prior_samples=0),
                  SequenceObjective(obs, toy, 0.99), obs)
    seen = torch.cat([a.reshape(-1) for a in toy.actions])
    assert seen.abs().max() <= 1.0 and torch.tanh(result.mu).abs().max() <= 1.0
    assert torch.tanh(result.mu).min() > 0.9  # and it still went for the large actions


def test_nothing_is_rewarded_after_a_predicted_termination():
    """r = 1 at every step, termination predicted at step 1 (of 4), a terminal value of 100:
    the score is r_0 + gamma r_1 (the terminating step counts), nothing after it."""
    conts = [1.0, 0.0, 1.0, 1.0]

    class Terminating(Toy):
        def begin(self, obs):
            t = iter(conts)
            return lambda s, a: Prediction(s, torch.ones(s.shape[0]),
                                           torch.full((s.shape[0],), next(t)))

    obs = torch.zeros(1, 2)
    sequence = SequenceObjective(obs, Terminating(None), 0.9,
                                 terminal=lambda s: torch.full((s.shape[0],), 100.0))
    score = sequence.score(torch.zeros(1, 1, 4, 1))
    assert score.item() == pytest.approx(1 + 0.9)
    conts[1] = 0.5  # a probability of going on: the later rewards and V count by it
    score = sequence.score(torch.zeros(1, 1, 4, 1))
    assert score.item() == pytest.approx(1 + 0.9 + 0.5 * (0.81 + 0.729 + 0.6561 * 100))
    assert sequence.score(torch.zeros(1, 1, 4, 1), terminal=False).item() == pytest.approx(
        1 + 0.9 + 0.5 * (0.81 + 0.729))


# ------------------------------------------------------------------------------ the prior
def target_objective(obs, target=0.7, prior_std=1e-3):
    """Reward -(a - target)^2 at every step; the prior proposes the target (almost surely)."""
    def fn(s, a):
        r = -(a - target).square().sum(-1)
        return Prediction(s, r, torch.ones_like(r))

    def prior(s):
        from mbiapo.models.tanh_gaussian import TanhGaussian
        u = torch.full((s.shape[0], 1), math.atanh(target))
        return TanhGaussian(u, torch.full_like(u, math.log(prior_std)))

    return SequenceObjective(obs, Toy(fn), 0.99, prior=prior)


@pytest.mark.parametrize("name", SEQ)
def test_prior_samples_bring_the_prior_in(name):
    """One short search: with prior samples, the first action is the prior's (0.7); with
    none, it is not found."""
    obs = torch.zeros(4, 2)
    few = {"iters": 1, "horizon": 3, "population": 6, "init_std": 1.0}
    few |= {"elites": 1} if name != "adam-seq" else {"lr": 1e-4}
    with_prior = plan(build(name, prior_samples=2, **few), target_objective(obs), obs)
    without = plan(build(name, prior_samples=0, **few), target_objective(obs), obs)
    assert (torch.tanh(with_prior.mu) - 0.7).abs().max() < 0.01
    assert (torch.tanh(without.mu) - 0.7).abs().max() > 0.05


def test_no_prior_no_proposals():
    obs = torch.zeros(1, 2)
    sequence, _ = constant_objective(obs)
    with pytest.raises(ValueError, match="no prior"):
        sequence.propose(2, 3)


# ------------------------------------------------------------------------------ settings
def test_colored_noise_is_correlated_in_time():
    white = colored_noise(0.0, (2000, 16, 1), torch.zeros(()))
    red = colored_noise(2.0, (2000, 16, 1), torch.zeros(()))

    def lag1(x):
        return (x[:, 1:] * x[:, :-1]).mean() / x.square().mean()

    assert abs(lag1(white)) < 0.05 and lag1(red) > 0.5
    assert red.std() == pytest.approx(1.0, abs=0.1)


def test_icem_options_change_the_search():
    obs = torch.zeros(1, 2)
    base = {"iters": 3, "horizon": 2, "population": 100, "elites": 10, "prior_samples": 0}
    rows = {}
    for label, extra in {"plain": {}, "keep": {"keep_elites": 0.5},
                         "decay": {"population_decay": 2.0}}.items():
        sequence, toy = constant_objective(obs)
        plan(build("cem-seq", **base, **extra), sequence, obs)
        rows[label] = toy.rows
    assert rows["plain"] == [100, 100, 100]
    assert rows["keep"] == [100, 105, 105]  # half the 10 elites scored again
    assert rows["decay"] == [100, 50, 25]
    # momentum: the refit moves the mean only by (1 - m) of the way
    start = torch.full((1, 2, 1), 1.5)
    init = (start, torch.full_like(start, math.log(0.5)))
    moved = {}
    for m in (0.0, 0.9):
        torch.manual_seed(2)  # the same samples, so the same refit
        sequence = target_objective(obs, target=-0.9)
        result = plan(build("cem-seq", **base | {"iters": 1}, momentum=m), sequence, obs, init)
        moved[m] = (1.5 - result.mu).abs().item()
    assert moved[0.9] == pytest.approx(0.1 * moved[0.0], rel=1e-5)


def test_mppi_temperature_changes_the_weights():
    """At a low temperature MPPI follows the best sample; at a high one, the elites' mean."""
    obs = torch.zeros(8, 2)
    common = {"iters": 1, "horizon": 1, "population": 64, "elites": 64, "prior_samples": 0,
              "init_std": 1.0}
    errors = {}
    for t in (1e-3, 1e3):
        torch.manual_seed(1)
        result = plan(build("mppi-seq", temperature=t, **common), target_objective(obs), obs)
        errors[t] = (torch.tanh(result.mu) - 0.7).abs().mean().item()
    assert errors[1e-3] < 0.1 < errors[1e3]


def test_terminal_value_setting():
    obs = torch.zeros(1, 2)

    def fn(s, a):
        return Prediction(s, torch.zeros(s.shape[0]), torch.ones(s.shape[0]))

    sequence = SequenceObjective(obs, Toy(fn), 0.5, terminal=lambda s: torch.ones(s.shape[0]))
    u = torch.zeros(1, 1, 2, 1)
    assert sequence.score(u).item() == 0.25 and sequence.score(u, terminal=False).item() == 0
    recorded = {}
    for flag in (True, False):
        planner = build("mppi-seq", terminal_value=flag, iters=1, horizon=2, population=8,
                        elites=2, prior_samples=0)
        result = planner.plan(RecordingObjective(sequence), obs, record=True)
        recorded[flag] = result.scores[-1].item()
    assert recorded == {True: 0.25, False: 0.0}


class RecordingObjective(Objective):
    """Adds the agent's J (here 0) that planners record beside the H-step score."""

    def __call__(self, mu, log_std):
        return torch.zeros(mu.shape[0])


# ------------------------------------------------------------------------------ errors
@pytest.mark.parametrize("name", SEQ)
def test_no_model_is_one_error_line(name):
    class Single:
        alpha, act_dim, sequence = 0.0, 1, None

    with pytest.raises(MbiapoError, match="plan through a model.*--model-based"):
        build(name).plan(Single(), torch.zeros(1, 2), record=False)


def test_adam_needs_a_differentiable_model():
    obs = torch.zeros(1, 2)
    sequence, toy = constant_objective(obs)
    toy.differentiable = False
    sequence.differentiable = False
    with pytest.raises(MbiapoError, match="mppi-seq or cem-seq"):
        plan(build("adam-seq", prior_samples=0), sequence, obs)


@pytest.mark.parametrize("override, message", [
    ("planner.horizon=0", "horizon"), ("planner.prior_samples=512", "prior_samples"),
    ("planner.min_std=3", "min_std"), ("planner.temperature=nan", "temperature"),
    ("planner.elites=0", "elites")])
def test_bad_settings(override, message):
    from omegaconf import OmegaConf

    from mbiapo.config import planner_group
    base = OmegaConf.create({"samples": 10, "train_samples": 1})
    with pytest.raises(MbiapoError, match=message):
        planner_group("mppi-seq", base, [override])


def test_registered_as_sequence_planners():
    assert set(SEQ) <= set(sequence_planners())
    assert not {"direct", "iterative", "cem", "mppi", "adam"} & set(sequence_planners())
