import torch

from mbiapo.models.policy_nets import DirectPolicyNet, IterativeAmortizerNet
from mbiapo.models.tanh_gaussian import soft_clamp_log_std


def test_zero_initialised_gates_mix_lambda_and_delta_half_and_half():
    net = IterativeAmortizerNet(obs_dim=4, act_dim=3, hidden=16)
    obs, mu, log_std = torch.randn(5, 4), torch.randn(5, 3), torch.randn(5, 3)
    grads = torch.randn(5, 3), torch.randn(5, 3)
    new_mu, new_log_std = net(obs, mu, log_std, *grads)
    # zero head: delta_mu = 0 and delta_log_std = soft_clamp(0) exactly, gates sigmoid(0)
    torch.testing.assert_close(new_mu, 0.5 * mu)
    delta_log_std = soft_clamp_log_std(torch.zeros(()))
    torch.testing.assert_close(new_log_std, 0.5 * log_std + 0.5 * delta_log_std)
    # the step only ever sees lambda detached: its path to the output is the gated mix
    mu.requires_grad_(True)
    d_mu = torch.autograd.grad(net(obs, mu, log_std, *grads)[0].sum(), mu)[0]
    torch.testing.assert_close(d_mu, torch.full_like(mu, 0.5))


def test_inputs_are_normalised_per_block_except_for_one_action_dimension():
    net = IterativeAmortizerNet(obs_dim=2, act_dim=3, hidden=8)
    torch.nn.init.normal_(net.head.weight)
    obs, mu, log_std, g1, g2 = (torch.randn(4, k) for k in (2, 3, 3, 3, 3))
    out = net(obs, mu, log_std, g1, g2)
    # per-block normalisation: scaling or shifting one block alone does not change the output
    torch.testing.assert_close(net(obs, mu, log_std, 1000 * g1, g2), out, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(net(obs, mu, log_std, g1, g2 + 5.0), out, atol=1e-4, rtol=1e-4)
    # ...but every block matters
    assert not torch.allclose(net(obs, mu, log_std, g1, -g2)[0], out[0])
    # with one action dimension there is nothing to normalise: the raw values are used
    net1 = IterativeAmortizerNet(obs_dim=2, act_dim=1, hidden=8)
    torch.nn.init.normal_(net1.head.weight)
    torch.nn.init.normal_(net1.trunk[0].weight)
    obs, mu, log_std, g1, g2 = (torch.randn(4, k) for k in (2, 1, 1, 1, 1))
    assert not torch.allclose(net1(obs, mu, log_std, 1000 * g1, g2)[0],
                              net1(obs, mu, log_std, g1, g2)[0])


def test_direct_net_shapes_and_log_std_bounds():
    net = DirectPolicyNet(4, 2, hidden=16)
    mu, log_std = net(100 * torch.randn(8, 4))
    assert mu.shape == log_std.shape == (8, 2)
    assert log_std.min() >= -10 and log_std.max() <= 2
