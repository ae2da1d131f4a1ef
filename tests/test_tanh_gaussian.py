import math

import torch
from torch.distributions import Normal, TransformedDistribution
from torch.distributions.transforms import TanhTransform

from mbiapo.models.tanh_gaussian import TanhGaussian, kl_to_uniform, soft_clamp_log_std


def test_log_prob_matches_torch_distributions():
    mu = torch.randn(5, 3)
    log_std = torch.rand(5, 3) - 1.0
    dist = TanhGaussian(mu, log_std)
    actions, u, log_prob = dist.rsample(7)
    reference = TransformedDistribution(Normal(mu.unsqueeze(1), log_std.exp().unsqueeze(1)),
                                        [TanhTransform()])
    expected = reference.log_prob(actions).sum(-1)
    torch.testing.assert_close(log_prob, expected, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(dist.log_prob_pre_tanh(u), log_prob, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(dist.log_prob(actions), log_prob, atol=1e-3, rtol=1e-3)


def test_rsample_is_differentiable_and_mode_is_tanh_mu():
    mu = torch.zeros(2, 2, requires_grad=True)
    log_std = torch.zeros(2, 2, requires_grad=True)
    dist = TanhGaussian(mu, log_std)
    actions, _, _ = dist.rsample(4)
    actions.sum().backward()
    assert mu.grad is not None and log_std.grad is not None
    torch.testing.assert_close(TanhGaussian(torch.ones(1, 2), log_std[:1]).mode,
                               torch.tanh(torch.ones(1, 2)))


def test_sample_draws_tanh_of_the_gaussian():
    mu = torch.tensor([[0.5, -1.0]]).expand(100_000, -1)
    log_std = torch.tensor([[-1.0, 0.0]]).expand(100_000, -1)
    actions = TanhGaussian(mu, log_std).sample()
    assert actions.shape == (100_000, 2) and actions.abs().max() < 1
    u = torch.atanh(actions.clamp(-1 + 1e-6, 1 - 1e-6))
    torch.testing.assert_close(u.mean(0), torch.tensor([0.5, -1.0]), atol=0.02, rtol=0)
    torch.testing.assert_close(u.std(0), torch.tensor([math.exp(-1.0), 1.0]), atol=0.02,
                               rtol=0)


def test_kl_to_uniform_of_a_near_uniform_distribution_is_small_and_nonnegative():
    # u ~ N(0, 0.8^2) pushed through tanh is close to uniform on (-1, 1).
    mu, log_std = torch.zeros(1, 1), torch.full((1, 1), math.log(0.8))
    _, _, log_prob = TanhGaussian(mu, log_std).rsample(200_000)
    kl = kl_to_uniform(log_prob, 1).item()
    assert 0.0 <= kl < 0.05
    # a narrow distribution is far from uniform: KL ~ log(2) - entropy
    _, _, log_prob = TanhGaussian(mu, torch.full((1, 1), -3.0)).rsample(50_000)
    expected = math.log(2) - (0.5 * math.log(2 * math.pi * math.e) - 3.0)
    assert abs(kl_to_uniform(log_prob, 1).item() - expected) < 0.02


def test_soft_clamp_bounds_and_is_near_identity_inside():
    x = torch.tensor([-100.0, -5.0, -1.0, 0.0, 100.0])
    y = soft_clamp_log_std(x)
    assert y.min() >= -10 - 1e-5 and y.max() <= 2 + 1e-5
    assert abs(y[1] + 5.0) < 0.01 and abs(y[2] + 1.0) < 0.06
