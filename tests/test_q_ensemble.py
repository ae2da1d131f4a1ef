import torch

from mbiapo.models.q_ensemble import QEnsemble, pessimistic


def test_batched_ensemble_equals_each_member_as_a_plain_mlp():
    q = QEnsemble(obs_dim=3, act_dim=2, members=3, hidden=8, layers=2)
    obs, act = torch.randn(4, 5, 3), torch.randn(4, 5, 2)
    out = q(obs, act)
    assert out.shape == (3, 4, 5)
    x = torch.cat([obs, act], -1)
    for i in range(3):
        h = x
        for layer, (w, b) in enumerate(q.layers()):
            h = h @ w[i] + b[i, 0]
            if layer < q.n_layers - 1:
                h = torch.relu(h)
        torch.testing.assert_close(out[i], h.squeeze(-1))


def test_members_are_initialised_differently():
    q = QEnsemble(3, 2, members=2, hidden=8)
    assert not torch.equal(q.w0[0], q.w0[1])


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


def test_hand_written_vjp_matches_autograd():
    q = QEnsemble(obs_dim=3, act_dim=2, members=3, hidden=8, layers=3)
    obs, act = torch.randn(4, 3), torch.randn(4, 5, 2, requires_grad=True)
    grad_q = torch.randn(3, 4, 5)
    full_obs = obs.unsqueeze(1).expand(-1, 5, -1)
    expected = torch.autograd.grad((q(full_obs, act) * grad_q).sum(), act)[0]
    values, vjp = q.forward_vjp(q.state_part(obs), act.detach())
    torch.testing.assert_close(values, q(full_obs, act).detach())
    torch.testing.assert_close(vjp(grad_q), expected)


def test_pessimism_with_its_gradient_matches_autograd():
    from mbiapo.models.q_ensemble import pessimistic_with_grad

    values = torch.randn(3, 7, requires_grad=True)
    expected = pessimistic(values, 1.7)
    value, grad = pessimistic_with_grad(values.detach(), 1.7)
    torch.testing.assert_close(value, expected.detach())
    torch.testing.assert_close(grad, torch.autograd.grad(expected.sum(), values)[0])


def test_pessimism_gradient_is_finite_where_members_agree():
    q = torch.tensor([[1.0, 2.0], [1.0, 5.0]], requires_grad=True)  # state 0: identical members
    pessimistic(q, 2.0).sum().backward()
    assert torch.isfinite(q.grad).all()
    torch.testing.assert_close(q.grad[:, 0], torch.tensor([0.5, 0.5]))


def test_hand_written_parameter_vjp_matches_autograd():
    q = QEnsemble(obs_dim=3, act_dim=2, members=3, hidden=8, layers=3)
    obs, act, grad_q = torch.randn(6, 3), torch.randn(6, 2), torch.randn(3, 6)
    expected = torch.autograd.grad((q(obs, act) * grad_q).sum(), list(q.parameters()))
    values, vjp = q.forward_param_vjp(obs, act)
    torch.testing.assert_close(values, q(obs, act).detach())
    grads = vjp(grad_q)
    assert len(grads) == len(expected)
    for grad, reference in zip(grads, expected):
        torch.testing.assert_close(grad, reference)
