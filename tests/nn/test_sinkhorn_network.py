import numpy as np
import pytest
import torch

from pyro_permutations.nn import SinkhornNetwork, reconstruct, reconstruction_loss
from pyro_permutations.ops import (
    all_permutations,
    compose_perms,
    log_sinkhorn,
    perm_to_matrix,
    sample_gumbel,
)


def random_perms(shape, n, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(tuple(shape) + (n,), generator=generator).argsort(dim=-1)


def make_net(n=5, seed=0, **kwargs):
    torch.manual_seed(seed)
    g1 = torch.nn.Sequential(torch.nn.Linear(1, 16), torch.nn.ReLU())
    return SinkhornNetwork(g1, n=n, feature_dim=16, **kwargs)


def permute_pieces(x, sigma):
    """``x'[b, i] = x[b, sigma[b, i]]``, i.e. ``x' = Q x`` with ``Q = perm_to_matrix(sigma)``."""
    index = sigma.reshape(sigma.shape + (1,) * (x.dim() - 2)).expand_as(x)
    return torch.gather(x, 1, index)


# The convention: scrambled piece i belongs at position perm[i], ordered = P^T scrambled.


def test_reconstruct_known_example():
    ordered = torch.tensor([[10.0, 20.0, 30.0]]).unsqueeze(-1)
    perm = torch.tensor([[2, 0, 1]])  # piece 0 -> position 2, piece 1 -> 0, piece 2 -> 1
    scrambled = torch.tensor([[30.0, 10.0, 20.0]]).unsqueeze(-1)
    assert torch.equal(reconstruct(scrambled, perm), ordered)
    assert torch.equal(reconstruct(scrambled, perm_to_matrix(perm)), ordered)
    # P^T x by hand.
    P = perm_to_matrix(perm)[0]
    assert torch.equal(P.T @ scrambled[0], ordered[0])


def test_reconstruct_sorting_convention():
    x = torch.rand(6, 5, 1, generator=torch.Generator().manual_seed(0))
    perm = x.squeeze(-1).argsort(-1).argsort(-1)  # perm[i] = rank of x_i
    ordered = x.sort(dim=1).values
    assert torch.equal(reconstruct(x, perm), ordered)
    assert torch.allclose(reconstruct(x, perm_to_matrix(perm)), ordered)


@pytest.mark.parametrize("piece_shape", [(), (1,), (2, 3)])
def test_reconstruct_inverts_scrambling(piece_shape):
    generator = torch.Generator().manual_seed(1)
    ordered = torch.randn((4, 6) + piece_shape, generator=generator)
    perm = random_perms((4,), 6, seed=2)
    # scrambled[i] = ordered[perm[i]]
    scrambled = permute_pieces(ordered, perm)
    assert torch.equal(reconstruct(scrambled, perm), ordered)
    assert torch.allclose(reconstruct(scrambled, perm_to_matrix(perm)), ordered)
    assert torch.equal(reconstruct(scrambled, perm_to_matrix(perm)), ordered)


def test_reconstruct_soft_and_sample_axis():
    generator = torch.Generator().manual_seed(3)
    x = torch.randn(2, 4, 3, generator=generator)
    P = torch.rand(5, 2, 4, 4, generator=generator)
    out = reconstruct(x, P)
    assert out.shape == (5, 2, 4, 3)
    expected = torch.einsum("sbij,bid->sbjd", P, x)
    assert torch.allclose(out, expected)
    # Hard permutations with a sample axis.
    perms = random_perms((5, 2), 4, seed=4)
    hard = reconstruct(x, perms)
    assert hard.shape == (5, 2, 4, 3)
    for s in range(5):
        assert torch.equal(hard[s], reconstruct(x, perms[s]))


def test_reconstruct_soft_promotes_dtypes():
    """Matrices and pieces meet in the promoted dtype: float64 pieces are not rounded to a
    float32 ``P``'s precision, and integer pieces are averaged in ``P``'s dtype."""
    generator = torch.Generator().manual_seed(5)
    x = torch.randn(2, 4, 3, generator=generator, dtype=torch.float64)
    perm = random_perms((2,), 4, seed=6)
    out = reconstruct(x, perm_to_matrix(perm, dtype=torch.float32))
    assert out.dtype == torch.float64
    assert torch.equal(out, reconstruct(x, perm))
    P = torch.rand(2, 4, 4, generator=generator, dtype=torch.float64)
    out = reconstruct(x.float(), P)
    assert out.dtype == torch.float64
    torch.testing.assert_close(out, torch.einsum("bij,bid->bjd", P, x.float().double()))
    ints = torch.arange(8).reshape(2, 4, 1)
    assert reconstruct(ints, perm_to_matrix(perm)).dtype == torch.float32


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_reconstruct_moves_hard_perms_to_the_pieces_device():
    x = torch.randn(3, 5, 2, device="cuda")
    perm = random_perms((3,), 5, seed=7)  # on the CPU, as scramble accepts
    out = reconstruct(x, perm)
    assert out.device == x.device
    assert torch.equal(out, reconstruct(x, perm.cuda()))
    assert torch.equal(out.cpu(), reconstruct(x.cpu(), perm))


def test_reconstruct_errors():
    x = torch.randn(2, 4, 1)
    with pytest.raises(ValueError, match="piece_shape"):
        reconstruct(x, random_perms((2,), 3))
    with pytest.raises(ValueError, match="batch axis"):
        reconstruct(x, random_perms((3,), 4))
    with pytest.raises(ValueError, match="permutations"):
        reconstruct(x, torch.zeros(2, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="soft P"):
        reconstruct(x, torch.rand(2, 4, 3))


# Equivariance: x'[i] = x[sigma[i]] (x' = Q x, Q = perm_to_matrix(sigma)) gives
# scores(x') = Q scores(x), eval perm'[i] = perm[sigma[i]] and the same reconstruction.


@pytest.mark.parametrize("context", [False, True])
def test_scores_equivariance(context):
    net = make_net(context=context)
    x = torch.rand(8, 5, 1, generator=torch.Generator().manual_seed(5))
    sigma = random_perms((8,), 5, seed=6)
    x_perm = permute_pieces(x, sigma)
    scores, scores_perm = net.scores(x), net.scores(x_perm)
    assert scores.shape == (8, 5, 5)
    Q = perm_to_matrix(sigma)
    assert torch.allclose(scores_perm, Q @ scores, atol=1e-6)


@pytest.mark.parametrize("context", [False, True])
def test_eval_output_equivariance(context):
    net = make_net(context=context).eval()
    x = torch.rand(8, 5, 1, generator=torch.Generator().manual_seed(7))
    sigma = random_perms((8,), 5, seed=8)
    x_perm = permute_pieces(x, sigma)
    perm, perm_perm = net(x), net(x_perm)
    assert perm.dtype == torch.long and perm.shape == (8, 5)
    assert torch.equal(perm_perm, compose_perms(sigma, perm))
    assert torch.equal(perm_to_matrix(perm_perm), perm_to_matrix(sigma) @ perm_to_matrix(perm))
    assert torch.equal(reconstruct(x_perm, perm_perm), reconstruct(x, perm))
    assert torch.equal(net.reconstruct(x_perm), net.reconstruct(x))


def test_soft_output_equivariance_without_noise():
    net = make_net(noise_factor=0.0, temperature=0.5, n_iters=20, samples_per_input=2)
    x = torch.rand(3, 5, 1, generator=torch.Generator().manual_seed(9))
    sigma = random_perms((3,), 5, seed=10)
    P, P_perm = net(x), net(permute_pieces(x, sigma))
    assert torch.allclose(P_perm, perm_to_matrix(sigma) @ P, atol=1e-6)


def test_without_context_the_parameters_are_those_of_earlier_checkpoints():
    assert sorted(make_net().state_dict()) == [
        "head.bias",
        "head.weight",
        "piece_net.0.bias",
        "piece_net.0.weight",
    ]
    assert "mix.0.weight" in make_net(context=True).state_dict()


def test_context_scores_follow_the_formula():
    # X_ij = g2(relu(W [h_i; mean_k h_k] + b))_j, computed here from the parts.
    net = make_net(context=True)
    x = torch.rand(4, 5, 1, generator=torch.Generator().manual_seed(11))
    h = net.piece_net(x.reshape(20, 1)).reshape(4, 5, 16)
    joined = torch.cat([h, h.mean(dim=1, keepdim=True).expand(4, 5, 16)], dim=-1)
    linear = net.mix[0]
    expected = net.head(torch.relu(joined @ linear.weight.T + linear.bias))
    assert torch.allclose(net.scores(x), expected, atol=1e-6)


@pytest.mark.parametrize("context", [False, True])
def test_a_row_depends_on_the_other_pieces_only_with_context(context):
    net = make_net(context=context)
    x = torch.rand(1, 5, 1, generator=torch.Generator().manual_seed(12))
    changed = x.clone()
    changed[0, 1:] += 1.0  # every piece but the first
    row, row_changed = net.scores(x)[0, 0], net.scores(changed)[0, 0]
    assert torch.equal(row, row_changed) != context


# Modes, shapes and gradients.


@pytest.mark.parametrize("n_iters", [None, 10])
def test_training_output(n_iters):
    net = make_net(samples_per_input=3, n_iters=n_iters)
    assert net.training
    torch.manual_seed(11)
    P = net(torch.rand(4, 5, 1))
    assert P.shape == (3, 4, 5, 5) and P.dtype == torch.float32
    assert (P >= 0).all()
    assert torch.allclose(P.sum(-2), torch.ones(3, 4, 5), atol=1e-5)
    atol = 1e-4 if n_iters is None else 1e-2
    assert torch.allclose(P.sum(-1), torch.ones(3, 4, 5), atol=atol)
    # Independent Gumbel noise per sample.
    assert not torch.allclose(P[0], P[1])


def test_eval_output_is_matching_of_scores():
    net = make_net().eval()
    x = torch.rand(4, 5, 1, generator=torch.Generator().manual_seed(12))
    perm = net(x)
    assert torch.equal(perm.sort(-1).values, torch.arange(5).expand(4, 5))
    # Brute force over all 120 permutations: M(X) maximises sum_i X[i, perm[i]].
    scores = net.scores(x).detach().double()
    totals = perm_to_matrix(all_permutations(5), dtype=torch.float64)
    totals = (totals * scores.unsqueeze(1)).sum((-1, -2))  # (B, 120)
    best = (perm_to_matrix(perm, dtype=torch.float64) * scores).sum((-1, -2))
    assert torch.allclose(best, totals.amax(-1))


@pytest.mark.parametrize("n_iters", [None, 10])
def test_training_output_is_gumbel_sinkhorn_of_scores(n_iters):
    # P = S((X + eta * G) / tau) with G ~ Gumbel(0, 1) iid, one draw of shape (S, B, n, n).
    net = make_net(temperature=0.7, noise_factor=0.5, samples_per_input=2, n_iters=n_iters)
    x = torch.rand(3, 5, 1, generator=torch.Generator().manual_seed(13))
    torch.manual_seed(17)
    P = net(x)
    torch.manual_seed(17)
    noise = sample_gumbel((2, 3, 5, 5))
    expected = log_sinkhorn((net.scores(x) + 0.5 * noise) / 0.7, n_iters=n_iters).exp()
    assert torch.allclose(P, expected, atol=1e-6)


@pytest.mark.parametrize("n_iters", [None, 10])
def test_gradients_flow_in_training(n_iters):
    net = make_net(samples_per_input=2, n_iters=n_iters)
    torch.manual_seed(14)
    x = torch.rand(4, 5, 1)
    loss = reconstruction_loss(x.sort(dim=1).values, x, net(x))
    loss.backward()
    for name, param in net.named_parameters():
        assert param.grad is not None, name
        assert torch.isfinite(param.grad).all(), name
        assert param.grad.abs().sum() > 0, name


def test_image_pieces():
    # A small CNN per piece: pieces of shape (1, 4, 4), as in jigsaw puzzles.
    torch.manual_seed(15)
    g1 = torch.nn.Sequential(
        torch.nn.Conv2d(1, 2, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.Flatten(),
        torch.nn.Linear(32, 8),
    )
    net = SinkhornNetwork(g1, n=4, feature_dim=8, samples_per_input=2, n_iters=5)
    x = torch.rand(3, 4, 1, 4, 4)
    P = net(x)
    assert P.shape == (2, 3, 4, 4)
    assert net.reconstruct(x, P).shape == (2, 3, 4, 1, 4, 4)
    sigma = random_perms((3,), 4, seed=16)
    net.eval()
    assert torch.equal(net(permute_pieces(x, sigma)), compose_perms(sigma, net(x)))


@pytest.mark.parametrize("context", [False, True])
def test_float64(context):
    net = make_net(n_iters=10, context=context).double()
    P = net(torch.rand(2, 5, 1, dtype=torch.float64))
    assert P.dtype == torch.float64


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"temperature": 0.0}, "temperature"),
        ({"noise_factor": -1.0}, "noise_factor"),
        ({"samples_per_input": 0}, "samples_per_input"),
        ({"n_iters": 0}, "n_iters"),
        ({"tol": -1.0}, "tol"),
        ({"n": True}, "n must"),
        ({"n": 5.0}, "n must"),
        ({"samples_per_input": True}, "samples_per_input"),
        ({"n_iters": np.int64(0)}, "n_iters"),
        ({"temperature": True}, "temperature"),
        ({"temperature": float("nan")}, "temperature"),
        ({"noise_factor": False}, "noise_factor"),
        ({"tol": "1e-5"}, "tol"),
        ({"context": 1}, "context"),
    ],
)
def test_invalid_options(kwargs, match):
    with pytest.raises(ValueError, match=match):
        make_net(**kwargs)


def test_numpy_options_are_accepted_and_converted():
    """Sizes may be NumPy integers and numbers any real numbers (NumPy's too, not bools),
    as everywhere in the library; they are stored as Python ints and floats."""
    g1 = torch.nn.Sequential(torch.nn.Linear(1, 16), torch.nn.ReLU())
    net = SinkhornNetwork(
        g1,
        n=np.int64(5),
        feature_dim=np.int32(16),
        temperature=np.float32(0.5),
        noise_factor=np.int64(0),
        samples_per_input=np.int64(2),
        n_iters=np.int16(10),
        tol=np.float32(1e-5),
    )
    values = [net.n, net.feature_dim, net.samples_per_input, net.n_iters]
    assert values == [5, 16, 2, 10] and all(type(v) is int for v in values)
    values = [net.temperature, net.noise_factor, net.tol]
    assert values[:2] == [0.5, 0.0] and all(type(v) is float for v in values)
    assert net(torch.rand(3, 5, 1)).shape == (2, 3, 5, 5)
    with pytest.raises(ValueError, match="feature_dim must be a positive int"):
        SinkhornNetwork(g1, n=5, feature_dim=np.float64(16))


def test_invalid_inputs():
    net = make_net()
    with pytest.raises(ValueError, match="n=5"):
        net(torch.rand(2, 4, 1))
    bad = SinkhornNetwork(torch.nn.Linear(1, 3), n=5, feature_dim=4)
    with pytest.raises(ValueError, match="feature_dim"):
        bad(torch.rand(2, 5, 1))
