import torch

from mbiapo.models.mlp import EnsembleLayerNorm, EnsembleLinear
from mbiapo.models.q_ensemble import QEnsemble, pessimistic


def test_batched_ensemble_equals_each_member_as_a_plain_mlp():
    q = QEnsemble(obs_dim=3, act_dim=2, members=3, hidden=8, layers=2)
    obs, act = torch.randn(4, 5, 3), torch.randn(4, 5, 2)
    out = q(obs, act)
    assert out.shape == (3, 4, 5)
    x = torch.cat([obs, act], -1)
    linears = [m for m in q.net if isinstance(m, EnsembleLinear)]
    for i in range(3):
        h = x
        for layer, linear in enumerate(linears):
            h = h @ linear.weight[i] + linear.bias[i, 0]
            if layer < len(linears) - 1:
                h = torch.relu(h)
        torch.testing.assert_close(out[i], h.squeeze(-1))


def test_ensemble_layer_norm_gives_each_member_its_own_affine_parameters():
    q = QEnsemble(obs_dim=3, act_dim=2, members=2, hidden=8, layers=1, layer_norm=True)
    norm = q.net[1]
    assert isinstance(norm, EnsembleLayerNorm) and norm.weight.shape == (2, 1, 8)
    obs, act = torch.randn(6, 3), torch.randn(6, 2)
    before = q(obs, act)
    with torch.no_grad():
        norm.weight[1].mul_(3.0)  # member 1 only
    after = q(obs, act)
    torch.testing.assert_close(after[0], before[0])
    assert not torch.allclose(after[1], before[1])


def test_obs_broadcasts_over_the_actions_leading_dimensions():
    q = QEnsemble(obs_dim=3, act_dim=2, members=2, hidden=8)
    obs, act = torch.randn(4, 3), torch.randn(4, 5, 2)
    torch.testing.assert_close(q(obs.unsqueeze(1), act),
                               q(obs.unsqueeze(1).expand(-1, 5, -1), act))


def test_members_are_initialised_differently():
    q = QEnsemble(3, 2, members=2, hidden=8)
    assert not torch.equal(q.net[0].weight[0], q.net[0].weight[1])


def test_pessimism_with_beta_one_and_two_members_is_the_minimum():
    values = torch.randn(2, 100)
    torch.testing.assert_close(pessimistic(values, 1.0), values.min(0).values)
    # beta = 0 is the mean; larger beta is more pessimistic
    torch.testing.assert_close(pessimistic(values, 0.0), values.mean(0))
    assert (pessimistic(values, 2.5) <= pessimistic(values, 1.0)).all()


def test_pessimism_hand_computed_three_members():
    values = torch.tensor([[1.0], [2.0], [6.0]])  # mean 3, population std sqrt(14/3)
    expected = 3.0 - 1.5 * (14.0 / 3.0) ** 0.5
    torch.testing.assert_close(pessimistic(values, 1.5), torch.tensor([expected]))
