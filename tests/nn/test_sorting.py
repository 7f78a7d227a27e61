"""Learning to sort numbers with a Sinkhorn network: the reference setup of [GS] section 5.1."""

import torch

from pyro_permutations.nn import (
    SinkhornNetwork,
    kendall_tau_mean,
    l1_error,
    prop_any_wrong,
    prop_wrong,
    reconstruction_loss,
)

N = 5
STEPS = 300  # every seed tried reached 0 errors after 50 steps


def sorting_batch(batch, generator=None):
    """Scrambled lists ``(B, n, 1)`` from U(0, 1), their sorted versions and true perms.

    ``perm[i]`` is the rank of ``x_i``: scrambled number ``i`` belongs at that position.
    """
    x = torch.rand(batch, N, 1, generator=generator)
    return x, x.sort(dim=1).values, x.squeeze(-1).argsort(-1).argsort(-1)


def test_learns_to_sort():
    torch.manual_seed(0)
    g1 = torch.nn.Sequential(torch.nn.Linear(1, 32), torch.nn.ReLU())
    net = SinkhornNetwork(
        g1, n=N, feature_dim=32, temperature=1.0, noise_factor=1.0, samples_per_input=5, n_iters=10
    )
    optimizer = torch.optim.Adam(net.parameters(), lr=0.1)
    for _ in range(STEPS):
        x, ordered, _ = sorting_batch(10)
        loss = reconstruction_loss(ordered, x, net(x))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    net.eval()
    x, ordered, true = sorting_batch(1000, torch.Generator().manual_seed(1))
    inferred = net(x)
    assert prop_any_wrong(inferred, true).item() == 0.0
    assert prop_wrong(inferred, true).item() == 0.0
    assert kendall_tau_mean(inferred, true).item() == 1.0
    assert l1_error(net.reconstruct(x, inferred), ordered).item() == 0.0
