"""Every network option (activation, layer norm, depth) of every network the config builds:
it reaches its network and changes its output, every parameter it adds learns, the
planners' dJ/dlambda matches an independent float64 reference, a custom value estimate works
everywhere the agent's does, and bad settings fail with one clear line."""

import math

import numpy as np
import pytest
import torch
from torch import nn

from mbiapo.agent import Agent
from mbiapo.analyses.common import agent_objective
from mbiapo.analyses.compare import compare
from mbiapo.config import compose, overrides_for
from mbiapo.errors import MbiapoError
from mbiapo.evaluate import run_episodes
from mbiapo.models.mlp import ACTIVATIONS, EnsembleLayerNorm, EnsembleLinear
from mbiapo.objective import SoftObjective
from mbiapo.planners import AdamPlanner, IterativePlanner

ENV = "InvertedPendulum-v5"
OBS_DIM, ACT_DIM = 3, 2  # A > 1: the iterative net's input layer norm is in use
HIDDEN = 12
SMALL = {"planner.hidden": HIDDEN, "value.hidden": HIDDEN, "planner.iters": 2,
         "planner.samples": 4}
SMALL_MODEL = {"value.model_hidden": HIDDEN, "value.rollout_hidden": HIDDEN, "value.horizon": 2}
"""The model-based keys, only for model-based agents (other kinds have none)."""


def _small(kind: str) -> dict:
    return {**SMALL, **(SMALL_MODEL if kind == "model-based" else {})}

# network group -> (planner, value kind, config key prefix); model and rollout networks
# exist in model-based agents only
GROUPS = {
    "q": ("direct", "model-free", "value."),
    "direct": ("direct", "model-free", "planner."),
    "iterative": ("iterative", "model-free", "planner."),
    "model": ("iterative", "model-based", "value.model_"),
    "rollout": ("iterative", "model-based", "value.rollout_"),
}
# one option at a time, away from the defaults
OPTIONS = ([("activation", name) for name in ACTIVATIONS]
           + [("layer_norm", True), ("layer_norm", False), ("layers", 1), ("layers", 3)])
CASES = [pytest.param(group, option, value, id=f"{group}-{option}={value}")
         for group in GROUPS for option, value in OPTIONS]
LINEAR = (nn.Linear, EnsembleLinear)
LAYER_NORM = (nn.LayerNorm, EnsembleLayerNorm)


# ----------------------------------------------------------------------------- helpers
@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny networks gain nothing from a second intra-op thread, and with another busy
    process on 2 cores its waits make each step several times slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _config(tiny_cfg, group: str, **settings):
    """The group's agent config, tiny, with ``settings`` (short keys, e.g. layers=3) applied
    to the group's network."""
    planner, kind, prefix = GROUPS[group]
    keys = {f"{prefix}{key}": value for key, value in settings.items()}
    return tiny_cfg(planner, **{**_small(kind), "value.kind": kind, **keys})


def _setting(cfg, prefix: str, key: str):
    group, _, start = prefix.partition(".")
    return cfg[group][f"{start}{key}"]


def _baseline(option: str, value, default):
    """The setting to compare with: the default, or another value where they coincide."""
    if value != default:
        return default
    if option == "activation":
        return next(name for name in ACTIVATIONS if name != value)
    if option == "layer_norm":
        return not value
    return value + 1


def _networks(agent: Agent) -> dict[str, tuple[nn.Module, str]]:
    """The agent's configurable networks and their config key prefixes."""
    nets = {"q": (agent.q, "value."), "planner": (agent.planner.net, "planner.")}
    if agent.cfg.value.kind == "model-based":
        nets |= {"model": (agent.estimator.model, "value.model_"),
                 "rollout": (agent.estimator.rollout, "value.rollout_")}
    return nets


def _network(agent: Agent, group: str) -> nn.Module:
    return _networks(agent)["planner" if group in ("direct", "iterative") else group][0]


def _randomize_head(agent: Agent) -> None:
    """Give an iterative planner's zero-initialised head the same random weights in every
    agent, so the trunk's output reaches the planned parameters (and trunk gradients are
    not exactly zero)."""
    if isinstance(agent.planner, IterativePlanner):
        gen = torch.Generator().manual_seed(7)
        with torch.no_grad():
            for p in agent.planner.net.head.parameters():
                p.copy_(0.5 * torch.randn(p.shape, generator=gen, dtype=p.dtype))


def _outputs(agent: Agent, group: str) -> torch.Tensor:
    """The group's network on fixed random inputs, all outputs flattened into one vector."""
    gen = torch.Generator().manual_seed(3)
    obs, act = torch.randn(6, OBS_DIM, generator=gen), torch.rand(6, ACT_DIM, generator=gen)
    lam_and_grads = [torch.randn(6, ACT_DIM, generator=gen) for _ in range(4)]
    with torch.no_grad():
        if group == "q":
            out = [agent.q(obs, 2 * act - 1)]
        elif group == "iterative":
            out = agent.planner.net(obs, *lam_and_grads)
        elif group == "direct":
            out = agent.planner.net(obs)
        elif group == "model":
            out = agent.estimator.model(obs, 2 * act - 1)[:3]  # next state, reward, cont
        else:
            out = agent.estimator.rollout(obs)
    return torch.cat([o.flatten() for o in out])


def _check_structure(agent: Agent) -> None:
    """Each network has its own config's activation, depth and layer norms, and nothing of
    the other networks' settings: ``layers`` activations of the chosen class, layers + 1
    linear layers, and ``layers`` layer norms (of the ensemble kind for ensembles) or none."""
    for name, (net, prefix) in _networks(agent).items():
        activation, layers, layer_norm = (_setting(agent.cfg, prefix, key)
                                          for key in ("activation", "layers", "layer_norm"))
        acts = [type(m) for m in net.modules() if type(m) in ACTIVATIONS.values()]
        assert acts == [ACTIVATIONS[activation]] * layers, (name, acts)
        linears = [m for m in net.modules() if isinstance(m, LINEAR)]
        assert len(linears) == layers + 1, (name, linears)
        norms = [m for m in net.modules() if isinstance(m, LAYER_NORM)]
        assert len(norms) == (layers if layer_norm else 0), (name, norms)
        ensemble = isinstance(linears[0], EnsembleLinear)
        assert all(isinstance(m, EnsembleLayerNorm if ensemble else nn.LayerNorm)
                   for m in norms), (name, norms)


def _batch(rows: int = 8, obs_dim: int = OBS_DIM, act_dim: int = ACT_DIM):
    """A random replay batch with everything ``Agent.update`` reads; one row held out from
    model training and one terminal."""
    gen = torch.Generator().manual_seed(5)
    done, weight = torch.zeros(rows), torch.ones(rows)
    done[1], weight[2] = 1.0, 0.0
    return {"obs": torch.randn(rows, obs_dim, generator=gen),
            "act": torch.rand(rows, act_dim, generator=gen) * 2 - 1,
            "rew": torch.randn(rows, generator=gen),
            "next_obs": torch.randn(rows, obs_dim, generator=gen),
            "done": done, "model_weight": weight}


# ----------------------------------------------------------------------------- (a) outputs
@pytest.mark.parametrize(("group", "option", "value"), CASES)
def test_network_option_is_built_and_changes_the_output(tiny_cfg, group, option, value):
    """The same seed with the option and without it gives different outputs; the built
    networks hold exactly the configured activations, layers and layer norms."""
    prefix = GROUPS[group][2]
    default = _setting(_config(tiny_cfg, group), prefix, option)
    base = _baseline(option, value, default)
    agents = {}
    for setting in (base, value):
        torch.manual_seed(0)
        agents[setting] = Agent(_config(tiny_cfg, group, **{option: setting}), OBS_DIM,
                                ACT_DIM)
        _randomize_head(agents[setting])
        _check_structure(agents[setting])
    assert _setting(agents[value].cfg, prefix, option) == value
    before, after = _outputs(agents[base], group), _outputs(agents[value], group)
    assert before.shape == after.shape and torch.isfinite(after).all()
    assert not torch.allclose(before, after), f"{prefix}{option}={value} changes nothing"
    if option == "layers":
        # each hidden layer adds H x H weights and H biases (and 2H layer-norm parameters)
        # per ensemble member
        net = _network(agents[value], group)
        first = next(m for m in net.modules() if isinstance(m, LINEAR))
        members = first.weight.shape[0] if isinstance(first, EnsembleLinear) else 1
        norm = 2 * HIDDEN if _setting(agents[value].cfg, prefix, "layer_norm") else 0
        per_layer = members * (HIDDEN * HIDDEN + HIDDEN + norm)
        count = {s: sum(p.numel() for p in _network(agents[s], group).parameters())
                 for s in (base, value)}
        assert count[value] - count[base] == (value - base) * per_layer, count


# ----------------------------------------------------------------------------- (b) learning
def _snapshot(agent: Agent) -> dict[str, torch.Tensor]:
    return {name: p.detach().clone() for name, p in agent.named_parameters()}


@pytest.mark.parametrize(("group", "option", "value"), CASES)
def test_one_update_moves_every_learning_parameter(tiny_cfg, group, option, value):
    """After one ``Agent.update`` every parameter of the Q nets, the planner, the temperature
    and (model-based) the world model and rollout policy has changed, layer-norm affine
    parameters included; the target Q nets got no gradient, only Polyak averaging."""
    agent = Agent(_config(tiny_cfg, group, **{option: value}), OBS_DIM, ACT_DIM)
    _randomize_head(agent)
    before = _snapshot(agent)
    metrics = agent.update(_batch())
    assert all(torch.isfinite(torch.as_tensor(m)).all() for m in metrics.values()), metrics
    after = _snapshot(agent)
    learning = ["q.", "planner.", "log_alpha"]
    if agent.cfg.value.kind == "model-based":
        learning += ["estimator."]
        assert {"model_loss", "distill_kl"} <= metrics.keys()
    names = [n for n in after if n.startswith(tuple(learning))]
    assert {n.split(".")[0] for n in names} == {p.rstrip(".") for p in learning}
    frozen = [n for n in names if torch.equal(before[n], after[n])]
    assert not frozen, f"parameters that did not learn: {frozen}"
    assert all(p.grad is None and not p.requires_grad for p in agent.q_target.parameters())
    for name, p in agent.q_target.named_parameters():
        torch.testing.assert_close(p, torch.lerp(before[f"q_target.{name}"], after[f"q.{name}"],
                                                 agent.tau))


@pytest.mark.parametrize("layer_norm", [False, True])
def test_layer_norm_affine_parameters_learn(tiny_cfg, layer_norm):
    """With layer norm on in every network, each network has its layer norms and all their
    weights and biases change in one update; with it off, there are none."""
    settings = {f"{prefix}layer_norm": layer_norm for prefix in
                ("planner.", "value.", "value.model_", "value.rollout_")}
    agent = Agent(tiny_cfg("iterative", **{**_small("model-based"), "value.kind": "model-based",
                                           **settings}),
                  OBS_DIM, ACT_DIM)
    _randomize_head(agent)
    norms = [name for name, m in agent.named_modules() if isinstance(m, LAYER_NORM)]
    owners = {name.removeprefix("estimator.").split(".")[0] for name in norms}
    assert owners == ({"q", "q_target", "planner", "model", "rollout"} if layer_norm else set())
    before = _snapshot(agent)
    agent.update(_batch())
    after = _snapshot(agent)
    keys = [f"{name}.{param}" for name in norms if not name.startswith("q_target.")
            for param in ("weight", "bias")]
    frozen = [key for key in keys if torch.equal(before[key], after[key])]
    assert not frozen, f"layer-norm parameters that did not learn: {frozen}"


def test_fresh_iterative_planner_head_learns_first_and_then_the_trunk(tiny_cfg):
    """The zero-initialised head moves in the first Adam step (its gradient is not zero);
    the trunk, whose gradient passes through that head, moves from the second."""
    agent = Agent(_config(tiny_cfg, "iterative"), OBS_DIM, ACT_DIM)
    head = agent.planner.net.head
    assert not head.weight.any() and not head.bias.any()
    batch = _batch()
    before = _snapshot(agent)
    agent.update(batch)
    first = _snapshot(agent)
    for name in ("planner.net.head.weight", "planner.net.head.bias"):
        assert not torch.equal(before[name], first[name]), name
    agent.update(batch)
    second = _snapshot(agent)
    planner = [n for n in second if n.startswith("planner.")]
    frozen = [n for n in planner if torch.equal(before[n], second[n])]
    assert not frozen, f"planner parameters still unchanged after two updates: {frozen}"


# ----------------------------------------------------------------------------- (c) dJ/dlambda
def _tanh_gaussian_draw(mu, log_std, eps):
    """a = tanh(mu + sigma eps) and log pi(a) summed over A, from the change of variables:
    log N(eps) - log sigma - log(1 - a^2). mu, log_std (..., A), eps (..., n, A)."""
    u = mu.unsqueeze(-2) + log_std.exp().unsqueeze(-2) * eps
    a = torch.tanh(u)
    log_normal = -0.5 * eps.square() - 0.5 * math.log(2 * math.pi)
    log_pi = (log_normal - log_std.unsqueeze(-2) - torch.log(1 - a.square())).sum(-1)
    return a, log_pi


def _reference_j(qhat, mu, log_std, eps, alpha):
    """J (B,) = mean_n Qhat(a) - alpha (mean_n log pi(a) + A log 2), for fixed draws eps."""
    a, log_pi = _tanh_gaussian_draw(mu, log_std, eps)
    return qhat(a).mean(-1) - alpha * (log_pi.mean(-1) + mu.shape[-1] * math.log(2.0))


def _pessimistic_q(agent: Agent, beta: float):
    """Qhat(s, a) = mean_i Q_i - beta std_i Q_i (population std) of the agent's Q nets."""

    def qhat(s, a):
        q = agent.q(s, a)
        return q.mean(0) - beta * q.std(0, correction=0)

    return qhat


def _reference_retrace(agent: Agent, beta: float):
    """DESIGN 3 (model-based value): Q(s0, a0) + sum_{t<h} (gamma lam)^t alive_t delta_t,
    delta_t = r_t + gamma cont_{t+1} V(s_{t+1}) - Q(s_t, a_t), V(s) = Q(s, a') - alpha
    log pi(a'|s) with one rollout-policy draw a' (also the next action), mean model states,
    alive_t the product of the predicted continuations before t."""
    cfg, qhat = agent.cfg, _pessimistic_q(agent, beta)
    gamma, lam, horizon = cfg.train.gamma, cfg.value.retrace_lambda, cfg.value.horizon
    alpha = agent.log_alpha.detach().exp()

    def estimate(s, a):
        q_sa = qhat(s, a)
        total, alive = q_sa, 1.0
        for t in range(horizon):
            pred = agent.estimator.model(s, a)
            flat = pred.next_obs.reshape(-1, pred.next_obs.shape[-1])
            mu, log_std = agent.estimator.rollout(flat)
            eps = torch.randn(flat.shape[0], 1, mu.shape[-1], dtype=mu.dtype)
            a_next, log_pi = _tanh_gaussian_draw(mu, log_std, eps)
            a_next = a_next.reshape(*s.shape[:-1], -1)
            log_pi = log_pi.reshape(s.shape[:-1])
            q_next = qhat(pred.next_obs, a_next)
            delta = pred.reward + gamma * pred.cont * (q_next - alpha * log_pi) - q_sa
            total = total + (gamma * lam) ** t * alive * delta
            alive = alive * pred.cont
            s, a, q_sa = pred.next_obs, a_next, q_next
        return total

    return estimate


def _finite_difference(fn, mu, log_std, step=1e-5):
    """Central differences of sum_b fn(mu, log_std) w.r.t. every entry of mu and log_std."""
    params, grads = (mu, log_std), []
    for which, x in enumerate(params):
        grad = torch.zeros_like(x)
        for i in range(x.numel()):
            ends = []
            for sign in (1.0, -1.0):
                shifted = x.clone()
                shifted.view(-1)[i] += sign * step
                args = list(params)
                args[which] = shifted
                ends.append(fn(*args).sum())
            grad.view(-1)[i] = (ends[0] - ends[1]) / (2 * step)
        grads.append(grad)
    return tuple(grads)


FD_CASES = [
    pytest.param("model-free", {}, id="model-free"),
    pytest.param("model-free", {"value.layer_norm": True, "value.activation": "elu"},
                 id="model-free-layer_norm-elu"),
    pytest.param("model-based", {}, id="model-based"),
    pytest.param("model-based", {"value.model_activation": "silu", "value.layers": 3,
                                 "value.rollout_layer_norm": True},
                 id="model-based-silu-3_layers-layer_norm"),
]


@pytest.mark.parametrize(("kind", "settings"), FD_CASES)
def test_planner_gradient_matches_a_float64_finite_difference_reference(tiny_cfg, kind,
                                                                        settings):
    """J and dJ/dlambda of ``Agent.objective`` equal central finite differences of a J
    written here from the formulas (same draws), in float64; the iterative and Adam
    planners take their first step from exactly that gradient."""
    cfg = tiny_cfg("iterative", **{**_small(kind), "value.kind": kind, **settings})
    agent = Agent(cfg, OBS_DIM, ACT_DIM).double()
    _randomize_head(agent)
    gen = torch.Generator().manual_seed(11)
    with torch.no_grad():
        agent.log_alpha.fill_(math.log(0.4))
        if agent.cfg.value.kind == "model-based":  # away from identity statistics, a fresh model
            model = agent.estimator.model
            for norm in (model.obs_norm, model.delta_norm, model.reward_norm):
                norm.mean.copy_(torch.randn(norm.mean.shape, generator=gen))
                norm.var.copy_(torch.rand(norm.var.shape, generator=gen) + 0.5)
            for p in model.parameters():
                p.add_(0.3 * torch.randn(p.shape, generator=gen, dtype=p.dtype))
    b, n, beta, seed = 3, 4, 1.3, 123
    obs = torch.randn(b, OBS_DIM, generator=gen, dtype=torch.float64)
    mu = torch.randn(b, ACT_DIM, generator=gen, dtype=torch.float64)
    log_std = 0.3 * torch.randn(b, ACT_DIM, generator=gen, dtype=torch.float64)

    qhat = _pessimistic_q(agent, beta) if kind == "model-free" else _reference_retrace(agent,
                                                                                      beta)
    states = obs.unsqueeze(1).expand(-1, n, -1)

    def reference(mu, log_std):
        torch.manual_seed(seed)
        eps = torch.randn(b, n, ACT_DIM, dtype=torch.float64)
        with torch.no_grad():
            return _reference_j(lambda a: qhat(states, a), mu, log_std, eps,
                                agent.log_alpha.exp())

    objective = agent.objective(obs, beta, n)
    assert isinstance(objective, SoftObjective)
    torch.manual_seed(seed)
    value, grads = objective.value_and_grad(mu, log_std)
    torch.testing.assert_close(value, reference(mu, log_std), rtol=1e-10, atol=1e-10)
    expected = _finite_difference(reference, mu, log_std)
    for got, want in zip(grads, expected):
        assert got.dtype == torch.float64 and want.abs().min() > 0
        torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-8)

    # the planners consume it: one iterative step and one Adam step from (mu, log_std)
    net = agent.planner.net
    with torch.no_grad():
        torch.manual_seed(seed)
        plan = agent.planner.plan(objective, obs, iters=1, init=(mu, log_std), record=True)
        step_mu, step_log_std = net.step(net.encode(obs), mu, log_std, *expected)
    assert torch.isfinite(plan.mu).all() and torch.isfinite(plan.values[0]).all()
    torch.testing.assert_close(plan.mu, step_mu, rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(plan.log_std, step_log_std, rtol=1e-6, atol=1e-7)
    adam = agent.planner_named("adam")
    assert isinstance(adam, AdamPlanner)
    with torch.no_grad():
        torch.manual_seed(seed)
        plan = adam.plan(objective, obs, iters=1, init=(mu, log_std), record=False)
    # Adam's first step is lr * g / (|g| + 1e-8) uphill: lr sign(g), up to lr 1e-8 / |g|
    torch.testing.assert_close(plan.mu - mu, adam.lr * expected[0].sign(), rtol=0,
                               atol=100 * adam.lr * 1e-8 / expected[0].abs().min().item())


# ----------------------------------------------------------------------------- (d) custom value
class QuadraticValue:
    """A plain differentiable value estimate, ``-scale |a - target(s)|^2``, that records its
    calls: obs (B, S), actions (b, N, A), beta -> (b, N)."""

    def __init__(self, act_dim: int, scale: float = 10.0):
        self.act_dim, self.scale, self.calls = act_dim, scale, []

    def target(self, obs):
        return 0.6 * torch.tanh(obs[..., : self.act_dim] + 0.5)

    def __call__(self, obs, actions, beta):
        self.calls.append((tuple(obs.shape), tuple(actions.shape), beta))
        target = self.target(obs[: actions.shape[0]]).unsqueeze(1)
        return -self.scale * (actions - target).square().sum(-1)


def _custom_agent(tiny_cfg, planner: str, obs_dim: int, act_dim: int):
    keys = [f"{k}={v}" for k, v in SMALL.items() if k.startswith("planner.")]
    mine = {item.partition("=")[0] for item in overrides_for(planner, keys)}  # adam: no hidden
    settings = {k: v for k, v in SMALL.items() if not k.startswith("planner.") or k in mine}
    agent = Agent(tiny_cfg(planner, **settings), obs_dim, act_dim)
    agent.value = QuadraticValue(act_dim)
    with torch.no_grad():
        agent.log_alpha.fill_(math.log(0.01))
    return agent


@pytest.mark.parametrize("planner", ["direct", "iterative", "adam", "cem"])
def test_custom_value_estimate_drives_act(tiny_cfg, planner):
    """``Agent.act`` plans against a custom value: actions of the right shape in [-1, 1], and
    the value is called for every planner that evaluates J."""
    agent = _custom_agent(tiny_cfg, planner, OBS_DIM, ACT_DIM)
    obs = np.random.default_rng(0).standard_normal((5, OBS_DIM)).astype(np.float32)
    single = agent.act(obs[0], iters=3)
    batch = agent.act(obs, deterministic=True, iters=3)
    assert single.shape == (ACT_DIM,) and batch.shape == (5, ACT_DIM)
    assert np.isfinite(batch).all() and np.abs(batch).max() <= 1
    if planner != "direct":  # a direct planner needs no J when acting
        assert agent.value.calls and all(call[0][1] == OBS_DIM and call[1][-1] == ACT_DIM
                                         for call in agent.value.calls)


def test_adam_planner_moves_towards_the_custom_value_optimum(tiny_cfg):
    """Planning against ``-|a - target(s)|^2`` brings tanh(mu) close to target(s)."""
    agent = _custom_agent(tiny_cfg, "direct", OBS_DIM, ACT_DIM)
    obs = torch.randn(6, OBS_DIM)
    actions = agent.act(obs.numpy(), deterministic=True, planner=agent.planner_named("adam"),
                        iters=150)
    target = agent.value.target(obs)
    start = target.abs()  # the search starts at mu = 0, action 0
    error = (torch.as_tensor(actions) - target).abs()
    assert error.mean() < 0.5 * start.mean(), (error, start)
    assert (np.sign(actions) == target.sign().numpy()).all(), (actions, target)


@pytest.mark.parametrize("batched", [True, False], ids=["evaluate", "plan"])
def test_custom_value_estimate_in_run_episodes(tiny_cfg, batched):
    """``run_episodes`` (behind ``evaluate``, batched, and ``plan``, one state per call)
    plays short episodes with a custom value estimate."""
    agent = _custom_agent(tiny_cfg, "iterative", 4, 1)
    result = run_episodes(agent, ENV, episodes=2, seed=0, planner=agent.planner_named("adam"),
                          iters=2, batched=batched, max_episode_steps=3)
    assert len(result["returns"]) == 2 and all(0 < n <= 3 for n in result["lengths"])
    assert len(result["latency_ms"]) == (max(result["lengths"]) if batched
                                         else sum(result["lengths"]))
    calls = agent.value.calls
    assert calls and all(c[0][1] == 4 and c[1][-1] == 1 for c in calls)
    rows = {c[0][0] for c in calls}
    assert rows <= ({1, 2} if batched else {1}) and (2 in rows) == batched
    assert {c[2] for c in calls} == {agent.cfg.value.beta_collect}


def test_custom_value_estimate_in_compare(tiny_cfg):
    """``compare`` with ``agent_objective``: the traced J values are those of the custom
    estimate (checked against J written here), and Adam improves it."""
    agent = _custom_agent(tiny_cfg, "iterative", 4, 1)
    _randomize_head(agent)
    obs, samples, seed = torch.randn(3, 4), 16, 2
    planners = {"iterative": agent.planner, "adam": agent.planner_named("adam")}
    traces = compare(planners, agent_objective(agent, None, None),
                     agent_objective(agent, 0.5, samples), obs, iters=4, seed=seed)
    assert set(traces) == set(planners)
    value = agent.value
    for trace in traces.values():
        assert trace.values.shape == (4, 3) and torch.isfinite(trace.values).all()
        for k, (mu, log_std) in enumerate(trace.params):
            torch.manual_seed(seed)
            eps = torch.randn(3, samples, 1)
            expected = _reference_j(lambda a: value(obs, a, 0.5), mu.double(),
                                    log_std.double(), eps.double(), agent.alpha)
            torch.testing.assert_close(trace.values[k].double(), expected, rtol=1e-5,
                                       atol=1e-5)
    adam = traces["adam"].values.mean(1)
    assert adam[-1] > adam[0], adam
    assert {c[2] for c in value.calls} == {agent.cfg.value.beta_collect, 0.5}


# ----------------------------------------------------------------------------- (e) errors
NETWORK_PREFIXES = ["planner.", "value.", "value.model_", "value.rollout_"]


def _config_error(override: str) -> str:
    """The MbiapoError message a config override gives; it must be one line."""
    model_key = override.startswith(("value.model_", "value.rollout_"))
    kind = ["value.kind=model-based"] if model_key else []  # the only kind with those keys
    with pytest.raises(MbiapoError) as info:
        compose(ENV, "direct", overrides=[*kind, override])
    message = str(info.value)
    assert "\n" not in message, message
    return message


@pytest.mark.parametrize("prefix", NETWORK_PREFIXES)
def test_unknown_activation_is_one_line_naming_the_choices(prefix):
    message = _config_error(f"{prefix}activation=nope")
    assert f"{prefix}activation" in message and "nope" in message
    assert all(name in message for name in ACTIVATIONS), message


@pytest.mark.parametrize("key", ["hidden", "layers"])
@pytest.mark.parametrize("prefix", NETWORK_PREFIXES)
def test_empty_network_is_one_line_naming_the_bound(prefix, key):
    message = _config_error(f"{prefix}{key}=0")
    assert f"{prefix}{key}" in message and ">= 1" in message, message


@pytest.mark.parametrize("prefix", NETWORK_PREFIXES)
def test_non_boolean_layer_norm_is_one_line(prefix):
    message = _config_error(f"{prefix}layer_norm=maybe")
    assert f"{prefix}layer_norm" in message and "bool" in message, message
