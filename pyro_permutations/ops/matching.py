"""The matching operator: the best permutation for a matrix of scores (linear assignment)."""

import numpy as np
import scipy.optimize
import torch

from pyro_permutations.ops._validation import check_scores

__all__ = ["matching"]


def matching(scores):
    """Matching operator of [GS] section 2: the permutation that maximises the total score.

    .. math::

        M(X) = \\arg\\max_{P \\in \\mathcal{P}_N} \\langle P, X \\rangle_F
             = \\arg\\max_{\\mathrm{perm}} \\sum_{i=0}^{N-1} X_{i, \\mathrm{perm}(i)}

    This is the linear assignment problem, solved exactly for each matrix in the batch by
    :func:`scipy.optimize.linear_sum_assignment` (Jonker-Volgenant) on CPU. Convention:
    ``perm[..., i] = j`` means row ``i`` goes to column ``j``, i.e. ``P[..., i, perm[i]] = 1``.
    It is the zero-temperature limit of the Sinkhorn operator, ``M(X) = lim S(X / tau)``, and
    rounds a soft (e.g. doubly stochastic) matrix to a permutation. Ties are broken by the
    solver (deterministically); with continuous random scores they have probability zero.

    ``-inf`` entries mark forbidden pairs; they are avoided whenever some permutation avoids
    all of them. The result is not differentiable: gradients are not tracked.

    :param torch.Tensor scores: floating tensor of shape ``(..., N, N)``; finite or ``-inf``.
    :returns: long tensor ``perm`` of shape ``(..., N)`` on ``scores``' device.
    :raises ValueError: on NaN or ``+inf`` entries, non-square input, or when no permutation
        avoids the ``-inf`` entries.

    Example::

        >>> matching(torch.tensor([[1.0, 5.0, 0.0], [4.0, 0.0, 0.0], [0.0, 0.0, 2.0]]))
        tensor([1, 0, 2])

    References:

    [GS] Mena, Belanger, Linderman, Snoek. Learning Latent Permutations with Gumbel-Sinkhorn
    Networks. ICLR 2018, section 2.
    """
    check_scores(scores, "scores", allow_neg_inf=True)
    n = scores.shape[-1]
    batch_shape = scores.shape[:-2]
    flat = scores.detach().to(device="cpu", dtype=torch.float64).reshape(-1, n, n).numpy()
    out = np.empty((flat.shape[0], n), dtype=np.int64)
    for b in range(flat.shape[0]):
        try:
            _, out[b] = scipy.optimize.linear_sum_assignment(flat[b], maximize=True)
        except ValueError as e:
            index = tuple(int(i) for i in np.unravel_index(b, tuple(batch_shape)))
            raise ValueError(
                f"scores{list(index) if index else ''} has no perfect matching that avoids its "
                f"-inf (forbidden) entries; allow at least one permutation with all-finite scores"
            ) from e
    return torch.from_numpy(out).reshape(batch_shape + (n,)).to(scores.device)
