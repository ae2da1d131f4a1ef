"""Learned environment model: an ensemble of E members, each with residual Gaussian dynamics,
a Gaussian reward and a termination head.

Every member has three MLPs (paper Table 8: 2x256, LayerNorm, LeakyReLU); all 3E run as one
stacked computation (``ensemble_mlp``), network ``head * E + member``. Inputs are normalized
with running statistics that the members share; the dynamics network predicts the normalized
change ``(s' - s - m_delta) / sd_delta`` and the reward network the normalized reward.
Their standard deviations are learned per member and dimension or, with ``probabilistic``,
predicted for every input: each network's outputs are then a mean and a log-variance, the
log-variance soft-bounded between learned limits (PETS, Chua et al. 2018). E = 1 without
``probabilistic`` is mbiapo 0.3's single model, number for number.

Members are used in two ways (``value/model_based.py``):
- a rollout gives each trajectory one elite member for its whole horizon (``assign``), and
  runs each member on its own rows only, so E members cost one model's compute;
- an uncertainty (``uncertainty``) runs every elite on every row and measures their spread.
"""

from typing import NamedTuple

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from mbiapo.models.mlp import ensemble_forward, ensemble_mlp
from mbiapo.models.normalizer import RunningNormalizer
from mbiapo.models.tanh_gaussian import soft_clamp_log_std

DYNAMICS, REWARD, TERMINATION = range(3)
UNCERTAINTIES = ("max_sigma", "disagreement")
"""``max_sigma``: the largest norm of a member's predicted next-state std (MOPO);
``disagreement``: the largest distance between two members' mean next states (MOReL). Both
on states divided by their running std."""


class Prediction(NamedTuple):
    """Mean next state (..., S), mean reward (...), probability the episode goes on (...),
    and the members' uncertainty (...) where it was asked for."""

    next_obs: Tensor
    reward: Tensor
    cont: Tensor
    uncertainty: Tensor | None = None


class Assignment(NamedTuple):
    """Which elite member each of M rows follows. The rows are spread over k * n slots in a
    random order, n per member: slot ``j`` belongs to the ``j // n``-th elite in id order,
    row ``r`` sits in slot ``slot_of_row[r]`` and slot ``j`` holds row ``row_of_slot[j]``
    (slots past M repeat row 0)."""

    members: Tensor | None  # (k,) elite ids in order, None where every member is an elite
    count: int  # k
    slot_of_row: Tensor  # (M,)
    row_of_slot: Tensor  # (k * n,)
    per_member: int  # n

    @property
    def member_of_row(self) -> Tensor:
        """(M,) index into ``members`` of each row's member."""
        return self.slot_of_row // self.per_member


class WorldModel(nn.Module):
    """``forward(obs (..., S), act (..., A)) -> Prediction``, differentiable w.r.t. both.
    ``activation`` and ``layer_norm`` as in ``mlp`` (the paper's: leaky_relu with layer norm).
    ``elites`` members (default all) are used for predictions; ``set_elites`` chooses them."""

    def __init__(self, obs_dim: int, act_dim: int, hidden: int = 256, layers: int = 2,
                 activation: str = "leaky_relu", layer_norm: bool = True, members: int = 1,
                 elites: int | None = None, probabilistic: bool = False):
        super().__init__()
        self.obs_dim, self.members, self.probabilistic = obs_dim, members, probabilistic
        self.obs_norm = RunningNormalizer(obs_dim)
        self.delta_norm = RunningNormalizer(obs_dim)
        self.reward_norm = RunningNormalizer(1)
        # 3E networks of one stacked layout, output width S (2S with log-variances); reward
        # and termination read column 0 (and the reward's log-variance column S)
        width = 2 * obs_dim if probabilistic else obs_dim
        self.nets = ensemble_mlp(3 * members, obs_dim + act_dim, width, hidden, layers,
                                 activation, layer_norm)
        if probabilistic:  # soft bounds of the log-variance: S dynamics dims, then reward
            self.max_logvar = nn.Parameter(torch.full((obs_dim + 1,), 0.5))
            self.min_logvar = nn.Parameter(torch.full((obs_dim + 1,), -10.0))
        else:
            self.dynamics_log_std = nn.Parameter(torch.zeros(members, obs_dim))
            self.reward_log_std = nn.Parameter(torch.zeros(members))
        self.register_buffer("elites", torch.arange(elites or members))

    # ------------------------------------------------------------------------ networks
    def _input(self, obs: Tensor, act: Tensor) -> Tensor:
        """(..., S), (..., A) -> (M, S + A) normalized inputs, M = prod(...)."""
        x = torch.cat([self.obs_norm.normalize(obs), act], dim=-1)
        return x.reshape(-1, x.shape[-1])

    def _used(self) -> Tensor | None:
        """The elites in id order, or None where every member is one (the stacked network
        then runs whole, with no copy of its weights)."""
        return None if len(self.elites) == self.members else self.elites.sort().values

    def _run(self, x: Tensor, members: Tensor | None) -> Tensor:
        """x (K, M, in) for ``members`` (K,) (None: every member, K = E) -> (3, K, M, W)."""
        k = x.shape[0]
        if members is None:  # (for one member, mbiapo 0.3's call bit for bit)
            out = self.nets(x.expand(3, -1, -1) if self.members == 1 else x.repeat(3, 1, 1))
        else:  # the three heads of each member, head-major
            ids = (torch.arange(3, device=x.device)[:, None] * self.members + members)
            out = ensemble_forward(self.nets, x.repeat(3, 1, 1), ids.reshape(-1))
        return out.reshape(3, k, *x.shape[1:-1], -1)

    def _log_stds(self, out: Tensor, members: Tensor | None) -> tuple[Tensor, Tensor]:
        """Normalized log-stds of dynamics (K, M, S) and reward (K, M) from outputs
        (3, K, M, W) of ``members`` (K,) (None: every member)."""
        s = self.obs_dim
        if not self.probabilistic:
            members = slice(None) if members is None else members
            k, m = out.shape[1:3]
            return (soft_clamp_log_std(self.dynamics_log_std[members])[:, None].expand(k, m, s),
                    soft_clamp_log_std(self.reward_log_std[members])[:, None].expand(k, m))
        raw = torch.cat([out[DYNAMICS, ..., s:], out[REWARD, ..., s:s + 1]], dim=-1)
        # lower bound first, so that the upper one holds strictly: no blow-up off the data
        logvar = self.min_logvar + F.softplus(raw - self.min_logvar)
        logvar = self.max_logvar - F.softplus(self.max_logvar - logvar)
        return 0.5 * logvar[..., :s], 0.5 * logvar[..., s]

    def _decode(self, obs: Tensor, out: Tensor) -> Prediction:
        """Mean predictions from outputs (3, M, W) of the rows of obs (..., S)."""
        lead = obs.shape[:-1]
        next_obs = obs + self.delta_norm.denormalize(out[DYNAMICS, :, :self.obs_dim]
                                                     .reshape(*lead, -1))
        reward = self.reward_norm.denormalize(out[REWARD, :, :1]).reshape(lead)
        cont = torch.sigmoid(-out[TERMINATION, :, 0]).reshape(lead)
        return Prediction(next_obs, reward, cont)

    # ------------------------------------------------------------------------ predicting
    def assign(self, rows: int, device: torch.device | None = None) -> Assignment | None:
        """Each of ``rows`` rows gets an elite member at random, the elites equally often
        (None where there is one elite: nothing to choose)."""
        k = len(self.elites)
        if k == 1:
            return None
        n = -(-rows // k)
        order = torch.randperm(rows, device=device)  # the i-th of them goes to elite i % k
        i = torch.arange(rows, device=device)
        slots = (i % k) * n + i // k
        slot_of_row = torch.empty_like(order)
        slot_of_row[order] = slots
        row_of_slot = torch.zeros(k * n, dtype=torch.long, device=device)
        row_of_slot[slots] = order
        return Assignment(self._used(), k, slot_of_row, row_of_slot, n)

    def forward(self, obs: Tensor, act: Tensor, assignment: Assignment | None = None,
                uncertainty: str | None = None) -> Prediction:
        """Predictions for obs (..., S), act (..., A): each row from its ``assignment``'s
        member (None: the elite where there is one, else the elites' mean), with the elites'
        ``uncertainty`` (one of ``UNCERTAINTIES``) if asked."""
        x, used, k = self._input(obs, act), self._used(), len(self.elites)
        if uncertainty is None and k == 1:
            return self._decode(obs, self._run(x[None], used)[:, 0])
        if uncertainty is None and assignment is not None:
            # each member on its own rows: one model's compute for E members
            n = assignment.per_member
            out = self._run(x[assignment.row_of_slot].reshape(k, n, -1), assignment.members)
            return self._decode(obs, out.reshape(3, k * n, -1)[:, assignment.slot_of_row])
        out = self._run(x.expand(k, -1, -1), used)  # (3, k, M, W), elites in id order
        if assignment is None:
            chosen = out.mean(1)
        else:
            index = assignment.member_of_row[None, None, :, None].expand(3, 1, -1, out.shape[-1])
            chosen = out.gather(1, index)[:, 0]
        pred = self._decode(obs, chosen)
        if uncertainty is None:
            return pred
        return pred._replace(uncertainty=self._spread(out, uncertainty).reshape(obs.shape[:-1]))

    def _spread(self, out: Tensor, measure: str) -> Tensor:
        """The elites' uncertainty from their outputs (3, k, M, W): (M,), on next states
        divided by the running state std."""
        scale = self.delta_norm.std / self.obs_norm.std  # normalized change -> state units
        if measure == "max_sigma":
            log_std, _ = self._log_stds(out, self._used())
            return (log_std.exp() * scale).norm(dim=-1).max(0).values
        if measure == "disagreement":
            means = (out[DYNAMICS, ..., :self.obs_dim] * scale).transpose(0, 1)  # (M, k, S)
            return torch.cdist(means, means).flatten(1).max(1).values
        raise ValueError(f"unknown uncertainty '{measure}'; choose one of {UNCERTAINTIES}")

    @torch.no_grad()
    def member_std(self, obs: Tensor, act: Tensor) -> Tensor:
        """Each member's predicted std of the next state, in state units: (E, ..., S)."""
        x = self._input(obs, act)
        log_std, _ = self._log_stds(self._run(x.expand(self.members, -1, -1), None), None)
        return (log_std.exp() * self.delta_norm.std).reshape(self.members, *obs.shape)

    # ------------------------------------------------------------------------ learning
    @torch.no_grad()
    def update_statistics(self, obs: Tensor, rew: Tensor, next_obs: Tensor) -> None:
        """Merge a training batch into the normalizers: obs, next_obs (B, S), rew (B,)."""
        self.obs_norm.update(obs)
        self.delta_norm.update(next_obs - obs)
        self.reward_norm.update(rew.unsqueeze(-1))

    def loss(self, obs: Tensor, act: Tensor, rew: Tensor, next_obs: Tensor, done: Tensor,
             weight: Tensor, rows: Tensor | None = None) -> Tensor:
        """Negative log-likelihood of a batch (B rows, weighted by ``weight`` (B,), e.g. 0 for
        held-out rows): Gaussian on the normalized change and reward, Bernoulli on done.
        Member e learns from the rows ``rows[e]`` ((E, B') indices, e.g. a bootstrap
        resample; default: every member the whole batch). The sum of the members' weighted
        means, so each member's gradient is that of a single model (plus, probabilistic, the
        PETS term 0.01 (sum max_logvar - sum min_logvar) that tightens the bounds)."""
        x = self._input(obs, act)
        z_delta = self.delta_norm.normalize(next_obs - obs)
        z_rew = self.reward_norm.normalize(rew.unsqueeze(-1))[:, 0]
        if rows is None and self.members == 1:
            out = self._run(x[None], None)
            rows = torch.arange(x.shape[0], device=x.device)[None]
        else:
            rows = rows if rows is not None else torch.arange(
                x.shape[0], device=x.device).expand(self.members, -1)
            out = self._run(x[rows], None)
        log_std, rew_log_std = self._log_stds(out, None)
        nll = (_gaussian_nll(out[DYNAMICS, ..., :self.obs_dim], z_delta[rows], log_std).mean(-1)
               + _gaussian_nll(out[REWARD, ..., 0], z_rew[rows], rew_log_std)
               + F.binary_cross_entropy_with_logits(out[TERMINATION, ..., 0], done[rows],
                                                    reduction="none"))
        w = weight[rows]
        total = ((nll * w).sum(-1) / w.sum(-1).clamp_min(1.0)).sum()
        if self.probabilistic:
            total = total + 0.01 * (self.max_logvar.sum() - self.min_logvar.sum())
        return total

    @torch.no_grad()
    def member_errors(self, obs: Tensor, act: Tensor, next_obs: Tensor) -> Tensor:
        """Each member's mean squared error of the normalized change on (B,) rows: (E,)."""
        x = self._input(obs, act)  # the dynamics networks are the first E
        out = ensemble_forward(self.nets, x.expand(self.members, -1, -1), slice(self.members))
        z_delta = self.delta_norm.normalize(next_obs - obs)
        return (out[..., :self.obs_dim] - z_delta).pow(2).mean((1, 2))

    @torch.no_grad()
    def set_elites(self, errors: Tensor) -> None:
        """The ``len(elites)`` members of lowest ``errors`` (E,) become the elites, in order."""
        self.elites.copy_(errors.argsort()[: len(self.elites)])

    @torch.no_grad()
    def one_step_error(self, obs: Tensor, act: Tensor, next_obs: Tensor) -> tuple[float, float]:
        """Mean squared error of the predicted next state (the elites' mean), and that of
        predicting no change."""
        pred = self(obs, act).next_obs
        return (pred - next_obs).pow(2).mean().item(), (obs - next_obs).pow(2).mean().item()


def bootstrap_rows(members: int, rows: int, device: torch.device | None = None) -> Tensor:
    """(E, B) row indices: each member's own resample of B rows with replacement (about 63%
    of the rows appear in each)."""
    return torch.randint(rows, (members, rows), device=device)


def _gaussian_nll(mean: Tensor, target: Tensor, log_std: Tensor) -> Tensor:
    """Per-element -log N(target; mean, exp(log_std)^2) without the constant. Non-probabilistic
    log-stds are soft-clamped raw parameters; bounded log-variances pass through unchanged."""
    return 0.5 * (target - mean).pow(2) * torch.exp(-2.0 * log_std) + log_std
