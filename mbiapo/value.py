"""Value estimators: Q-hat(s, a) for batches of states and sampled actions."""

from collections.abc import Callable

import torch
from torch import Tensor

from mbiapo.models.mlp import mlp_forward_vjp
from mbiapo.models.policy_nets import DirectPolicyNet
from mbiapo.models.q_ensemble import QEnsemble, pessimistic, pessimistic_with_grad
from mbiapo.models.tanh_gaussian import TanhGaussian, soft_clamp_log_std, soft_clamp_log_std_grad
from mbiapo.models.world_model import Prediction, WorldModel


class ModelFreeValue:
    """Pessimistic ensemble estimate ``mean_i Q_i - beta std_i Q_i``."""

    def __init__(self, q: QEnsemble):
        self.q_net = q

    def __call__(self, obs: Tensor, actions: Tensor, beta: float) -> Tensor:
        """obs (B, S), actions (b, N, A) for the first b <= B states -> (b, N)."""
        obs = obs[: actions.shape[0]].unsqueeze(1).expand(-1, actions.shape[1], -1)
        return pessimistic(self.q_net(obs, actions), beta)

    def q_and_grad(self, obs: Tensor, beta: float) -> Callable[[Tensor], tuple[Tensor, Tensor]]:
        """For the states obs (B, S): ``actions (b, N, A) -> (Q-hat (b, N), dQ-hat/da (b, N, A))``
        for the first b <= B states, by the ensemble's hand-written VJP. The states' share of
        the first layer is computed at the first call (for the states it asks for) and reused
        by the later ones (one per planner iteration)."""
        state_part = None  # (E, b, 1, H)

        def q_and_grad(actions: Tensor) -> tuple[Tensor, Tensor]:
            nonlocal state_part
            b = actions.shape[0]
            if state_part is None or state_part.shape[1] < b:
                state_part = self.q_net.state_part(obs[:b])
            q, vjp = self.q_net.forward_vjp(state_part[:, :b], actions)
            value, weights = pessimistic_with_grad(q, beta)
            return value, vjp(weights)

        return q_and_grad


QFn = Callable[[Tensor, Tensor], Tensor]
StepFn = Callable[[Tensor, Tensor], Prediction]
PolicyFn = Callable[[Tensor], tuple[Tensor, Tensor]]


def retrace_estimate(q: QFn, step: StepFn, policy: PolicyFn, obs: Tensor, actions: Tensor,
                     alpha: Tensor | float, gamma: float, lam: float, horizon: int) -> Tensor:
    """Model-based Q estimate of (obs, actions) (paper Eq. 14-16): obs, actions (..., S/A) -> (...).

    ``Q(s0, a0) + sum_{t<h} (gamma lam)^t alive_t delta_t`` with
    ``delta_t = r(s_t, a_t) + gamma cont_{t+1} V(s_{t+1}) - Q(s_t, a_t)``,
    ``V(s) = Q(s, a') - alpha log pi(a'|s)``, ``a' ~ policy`` (and ``a_{t+1} = a'``), states
    from the model's mean, and ``alive_t`` the probability that no termination came before t.
    lam = 0 gives ``r + gamma V(s_1)``; lam = 1 the h-step soft return plus bootstrap.
    ``q(s, a) -> (...)``: a (pessimistic) Q estimate; ``step(s, a) -> Prediction``;
    ``policy(s) -> (a, log pi(a|s))``.
    """
    if horizon == 0:
        return q(obs, actions)
    # Q(s0, a0) cancels: the estimate is sum_t w_t (r_t + gamma cont_{t+1} V(s_{t+1}))
    # - sum_{0<t<h} w_t Q(s_t, a_t) with w_0 = 1, w_{t+1} = w_t gamma lam cont_{t+1}, so the
    # rollout runs first and Q is evaluated once for all h future steps
    s, a = obs, actions
    preds, states, acts, log_pis = [], [], [], []
    for _ in range(horizon):
        pred = step(s, a)
        s = pred.next_obs
        a, log_pi = policy(s)
        preds.append(pred)
        states.append(s)
        acts.append(a)
        log_pis.append(log_pi)
    q_next = q(torch.stack(states), torch.stack(acts))  # (h, ...): Q(s_t, a_t), t = 1..h
    return _retrace_sum(preds, q_next, log_pis, alpha, gamma, lam)[0]


def _retrace_sum(preds: list[Prediction], q_next: Tensor, log_pis: list[Tensor],
                 alpha: Tensor | float, gamma: float, lam: float
                 ) -> tuple[Tensor, list[Tensor | float], list[Tensor]]:
    """``retrace_estimate`` from its rollout: the h model predictions, q_next (h, ...) the Q
    estimates at (s_t, a_t) for t = 1..h and the h log pi(a_t|s_t). Returns the estimate, the
    weights w_0..w_h and the soft values V(s_1)..V(s_h) (the gradient needs them)."""
    weights, soft_v, estimate = [1.0], [], 0.0
    for t, pred in enumerate(preds):
        soft_v.append(q_next[t] - alpha * log_pis[t])
        estimate = estimate + weights[t] * (pred.reward + gamma * pred.cont * soft_v[t])
        weights.append(weights[t] * gamma * lam * pred.cont)
        if t + 1 < len(preds):
            estimate = estimate - weights[t + 1] * q_next[t]
    return estimate, weights, soft_v


class ModelBasedValue:
    """Retrace over ``horizon`` steps of the world model, with the pessimistic ensemble at
    every step and future actions from the (direct) rollout policy."""

    def __init__(self, q: QEnsemble, model: WorldModel, rollout: DirectPolicyNet,
                 log_alpha: Tensor, gamma: float, lam: float, horizon: int):
        self.q_net, self.model, self.rollout = q, model, rollout
        self.log_alpha = log_alpha
        self.gamma, self.lam, self.horizon = gamma, lam, horizon

    def _policy(self, obs: Tensor) -> tuple[Tensor, Tensor]:
        """One reparameterized rollout-policy sample per state: (..., S) -> (..., A), (...)."""
        flat = obs.reshape(-1, obs.shape[-1])
        actions, _, log_pi = TanhGaussian(*self.rollout(flat)).rsample(1)
        return actions.reshape(*obs.shape[:-1], -1), log_pi.reshape(obs.shape[:-1])

    def estimate(self, obs: Tensor, actions: Tensor, beta: float) -> Tensor:
        """obs (..., S), actions (..., A) -> (...)."""
        return retrace_estimate(lambda s, a: pessimistic(self.q_net(s, a), beta), self.model,
                                self._policy, obs, actions, self.log_alpha.detach().exp(),
                                self.gamma, self.lam, self.horizon)

    def __call__(self, obs: Tensor, actions: Tensor, beta: float) -> Tensor:
        """obs (B, S), actions (b, N, A) for the first b <= B states -> (b, N)."""
        obs = obs[: actions.shape[0]].unsqueeze(1).expand(-1, actions.shape[1], -1)
        return self.estimate(obs, actions, beta)

    def q_and_grad(self, obs: Tensor, beta: float) -> Callable[[Tensor], tuple[Tensor, Tensor]]:
        """For the states obs (B, S): ``actions (b, N, A) -> (estimate (b, N), d estimate / d
        actions (b, N, A))`` for the first b <= B states, the same numbers as autograd
        through ``__call__`` (same random draws) from hand-written vector-Jacobian products
        of the model, the rollout policy and the ensemble: no autograd graph, so planners
        pay for arithmetic, not bookkeeping."""

        def q_and_grad(actions: Tensor) -> tuple[Tensor, Tensor]:
            b, n, act_dim = actions.shape
            s = obs[:b].unsqueeze(1).expand(-1, n, -1).reshape(b * n, -1)
            a = actions.reshape(b * n, act_dim)
            if self.horizon == 0:
                q, q_vjp = self.q_net.forward_input_vjp(s, a)
                value, weights = pessimistic_with_grad(q, beta)
                return value.view(b, n), q_vjp(weights)[1].view(b, n, act_dim)
            value, grad = self._retrace_with_grad(s, a, beta)
            return value.view(b, n), grad.view(b, n, act_dim)

        return q_and_grad

    def _retrace_with_grad(self, s: Tensor, a: Tensor, beta: float) -> tuple[Tensor, Tensor]:
        """``estimate`` for s (M, S), a (M, A), and its gradient w.r.t. a, by reverse mode
        through the formula of ``retrace_estimate``."""
        gamma, lam, h = self.gamma, self.lam, self.horizon
        alpha = self.log_alpha.detach().exp()
        rollout = []
        for _ in range(h):
            pred, model_vjp = self.model.forward_vjp(s, a)
            s = pred.next_obs
            a, log_pi, policy_vjp = self._policy_vjp(s)
            rollout.append((pred, s, a, log_pi, model_vjp, policy_vjp))
        preds, states, acts, log_pis, model_vjps, policy_vjps = zip(*rollout)
        q, q_vjp = self.q_net.forward_input_vjp(torch.stack(states), torch.stack(acts))
        q_hat, q_weights = pessimistic_with_grad(q, beta)  # (h, M), (E, h, M)
        estimate, weights, soft_v = _retrace_sum(preds, q_hat, log_pis, alpha, gamma, lam)

        # adjoints of the estimate w.r.t. reward_t, cont_{t+1}, Q-hat_{t+1}, log pi_{t+1}
        grad_reward, grad_cont, grad_q_hat, grad_log_pi = [], [], [], []
        grad_weight_next = 0.0  # adjoint of w_{t+1} (w_h is unused)
        for t in reversed(range(h)):
            pred = preds[t]
            w_gamma = weights[t] * gamma
            grad_reward.append(weights[t])
            grad_q_hat.append(w_gamma * pred.cont - (weights[t + 1] if t + 1 < h else 0.0))
            grad_log_pi.append(-alpha * w_gamma * pred.cont)
            grad_cont.append(w_gamma * (soft_v[t] + lam * grad_weight_next))
            # w_t multiplies r_t + gamma cont_{t+1} V(s_{t+1}) and -Q(s_t, a_t) (t > 0) and
            # makes w_{t+1}
            grad_weight_next = (pred.reward + gamma * pred.cont * soft_v[t]
                                + grad_weight_next * gamma * lam * pred.cont)
            if t > 0:
                grad_weight_next = grad_weight_next - q_hat[t - 1]
        for adjoints in (grad_reward, grad_cont, grad_q_hat, grad_log_pi):
            adjoints.reverse()

        grad_s_q, grad_a_q = q_vjp(q_weights * torch.stack(grad_q_hat))  # (h, M, S/A)
        grad_s = grad_a = None  # w.r.t. (s_{t+1}, a_{t+1}) from the model step t+1
        for t in reversed(range(h)):
            g_a = grad_a_q[t] if grad_a is None else grad_a_q[t] + grad_a
            g_s = grad_s_q[t] + policy_vjps[t](g_a, grad_log_pi[t])
            if grad_s is not None:
                g_s = g_s + grad_s
            grad_s, grad_a = model_vjps[t](g_s, grad_reward[t], grad_cont[t])
        return estimate, grad_a

    def _policy_vjp(self, obs: Tensor) -> tuple[Tensor, Tensor, Callable]:
        """``_policy`` for obs (M, S) (the same random draw) plus the vector-Jacobian product
        ``vjp(grad_actions (M, A), grad_log_pi (M,)) -> grad_obs (M, S)``."""
        out, net_vjp = mlp_forward_vjp(self.rollout.net, obs)
        mu, raw_log_std = out.chunk(2, dim=-1)
        actions, u, log_pi = TanhGaussian(mu, soft_clamp_log_std(raw_log_std)).rsample(1)
        actions, u, log_pi = actions[:, 0], u[:, 0], log_pi[:, 0]

        def vjp(grad_actions: Tensor, grad_log_pi: Tensor) -> Tensor:
            # d a / d u = 1 - a^2; d log pi / d u = 2 a (from -log|det|); d u / d log_std =
            # sigma eps = u - mu; d log pi / d log_std = -1 directly
            g_log_pi = grad_log_pi.unsqueeze(-1)
            grad_u = grad_actions * (1.0 - actions.square()) + 2.0 * actions * g_log_pi
            grad_log_std = grad_u * (u - mu) - g_log_pi
            grad_raw = grad_log_std * soft_clamp_log_std_grad(raw_log_std)
            return net_vjp(torch.cat([grad_u, grad_raw], dim=-1))

        return actions, log_pi, vjp
