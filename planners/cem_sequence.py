"""The cross-entropy method over action sequences, with iCEM's options (Pinneri et al., 2020):
colored noise along time, elites kept for the next iteration, a shrinking population and
momentum."""

from dataclasses import dataclass

import torch
from torch import Tensor

from mbiapo.bounds import setting
from mbiapo.planners.sequence import SamplingSequencePlanner, SequenceConfig, top


@dataclass
class CEMSequenceConfig(SequenceConfig):
    """Plain CEM with the defaults; iCEM's paper settings: noise_beta 2-2.5, keep_elites
    0.3, population_decay 1.25, momentum 0.1."""

    elites: int = setting(64, ge=1)  # the best sequences, refitted
    # colored noise exponent along time (0: white; iCEM: 2-2.5)
    noise_beta: float = setting(0.0, ge=0)
    # share of the elites scored again in the next iteration
    keep_elites: float = setting(0.0, ge=0, le=1)
    population_decay: float = setting(1.0, ge=1)  # iteration k: population / decay^k (>= 2 elites)
    momentum: float = setting(0.0, ge=0, lt=1)  # new = m old + (1 - m) refit

    @staticmethod
    def check(cfg) -> str | None:
        problem = SequenceConfig.check(cfg)
        if problem:
            return problem
        if cfg.elites > cfg.population - cfg.prior_samples:
            return (f"planner.elites must lie in [1, planner.population - "
                    f"planner.prior_samples], got {cfg.elites}")
        return None


def colored_noise(beta: float, shape: tuple[int, ...], like: Tensor) -> Tensor:
    """Standard normal noise (..., H, A) whose power along H falls as 1 / f^beta (beta 0:
    white): white noise shaped in frequency space, each sequence scaled to unit variance
    per dimension on average."""
    horizon = shape[-2]
    if beta == 0 or horizon < 2:
        return torch.randn(shape, device=like.device, dtype=like.dtype)
    freqs = torch.fft.rfftfreq(horizon, device=like.device, dtype=like.dtype)
    freqs[0] = freqs[1]  # the constant term gets the lowest frequency's power
    scale = freqs.pow(-beta / 2)
    spectrum_shape = (*shape[:-2], freqs.shape[0], shape[-1])
    spectrum = torch.complex(torch.randn(spectrum_shape, device=like.device, dtype=like.dtype),
                             torch.randn(spectrum_shape, device=like.device, dtype=like.dtype))
    noise = torch.fft.irfft(spectrum * scale[:, None], n=horizon, dim=-2)
    return noise / noise.std(dim=-2, keepdim=True).clamp_min(1e-12)


class CEMSequencePlanner(SamplingSequencePlanner):
    """Refits mean and std to the elites; with iCEM's options, noise is colored, a share of
    the elites is scored again beside the next samples, the population shrinks and the
    refit is smoothed by momentum."""

    def __init__(self, obs_dim: int, act_dim: int, iters: int = 6, horizon: int = 5,
                 population: int = 512, prior_samples: int = 24, init_std: float = 2.0,
                 min_std: float = 0.05, terminal_value: bool = True, elites: int = 64,
                 noise_beta: float = 0.0, keep_elites: float = 0.0,
                 population_decay: float = 1.0, momentum: float = 0.0):
        super().__init__(act_dim, iters, horizon, population, prior_samples, init_std,
                         min_std, terminal_value)
        self.elites, self.noise_beta, self.keep = elites, noise_beta, keep_elites
        self.decay, self.momentum = population_decay, momentum

    def sample_count(self, k: int) -> int:
        sampled = self.population - self.prior_samples
        return max(int(sampled / self.decay ** k), min(2 * self.elites, sampled))

    def noise(self, shape: tuple[int, ...], like: Tensor, k: int) -> Tensor:
        return colored_noise(self.noise_beta, shape, like)

    def refit(self, u: Tensor, score: Tensor, mu: Tensor, log_std: Tensor
              ) -> tuple[Tensor, Tensor, Tensor | None]:
        elite, _ = top(u, score, self.elites)
        keep = round(self.keep * self.elites)
        m = self.momentum
        new_mu = elite.mean(1)
        new_log_std = elite.std(1, correction=0).clamp_min(1e-12).log()
        return (m * mu + (1 - m) * new_mu, m * log_std + (1 - m) * new_log_std,
                elite[:, :keep] if keep else None)
