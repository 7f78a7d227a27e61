"""Empirical pmf over all ``N!`` permutations from samples."""

import math

import torch

from pyro_permutations.ops import matching, perm_to_rank
from pyro_permutations.ops._validation import check_enumerable, check_perm

__all__ = ["empirical_pmf"]


def empirical_pmf(samples):
    """Frequencies of every permutation in ``samples``, aligned with ``all_permutations(N)``.

    .. math::

        \\hat p(\\pi) = \\frac{1}{S} \\sum_{s=1}^{S} [\\pi_s = \\pi]

    ``samples`` may be long permutations ``(..., S, N)``, permutation matrices, or relaxed
    matrices ``(..., S, N, N)`` (doubly stochastic or not), which are first rounded to their
    nearest permutation with :func:`~pyro_permutations.ops.matching` (as [BP] section 5 does
    with its variational samples). Leading dimensions are batch dimensions.

    :param torch.Tensor samples: ``(..., S, N)`` integer or ``(..., S, N, N)`` floating.
    :returns: float64 tensor ``(..., N!)`` summing to one along the last axis.

    Example::

        >>> import torch
        >>> empirical_pmf(torch.tensor([[0, 1, 2], [0, 1, 2], [2, 1, 0], [0, 1, 2]]))
        tensor([0.7500, 0.0000, 0.0000, 0.0000, 0.0000, 0.2500], dtype=torch.float64)
    """
    if not isinstance(samples, torch.Tensor):
        raise TypeError(f"samples must be a torch.Tensor, got {type(samples).__name__}")
    if samples.dtype.is_floating_point:
        if samples.dim() < 3 or samples.shape[-1] != samples.shape[-2]:
            raise ValueError(
                f"floating samples must be matrices of shape (..., S, N, N), got "
                f"{tuple(samples.shape)}"
            )
        samples = matching(samples)
    else:
        if samples.dim() < 2:
            raise ValueError(
                f"samples must have shape (..., S, N) (a sample axis and the permutation), "
                f"got {tuple(samples.shape)}"
            )
        check_perm(samples, "samples")
    n = samples.shape[-1]
    check_enumerable(n, "N")
    size = math.factorial(n)
    batch_shape, count = samples.shape[:-2], samples.shape[-2]
    if count == 0:
        raise ValueError("samples holds no sample (S = 0); draw at least one")
    ranks = perm_to_rank(samples).reshape(-1, count)
    offsets = torch.arange(ranks.shape[0], device=ranks.device)[:, None] * size
    counts = torch.bincount((ranks + offsets).reshape(-1), minlength=ranks.shape[0] * size)
    return (counts.double() / count).reshape(batch_shape + (size,))
