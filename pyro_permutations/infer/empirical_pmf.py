"""Empirical pmf over all ``N!`` permutations from samples."""

import math

import torch

from pyro_permutations.ops import matching, perm_to_rank
from pyro_permutations.ops._validation import (
    MAX_ENUMERATE_N,
    check_floating,
    check_no_nan,
    check_perm,
)

__all__ = ["empirical_pmf"]


def _check_items(samples):
    """The permutations in ``samples`` have ``1 <= N <= MAX_ENUMERATE_N`` items."""
    n = samples.shape[-1]
    if n == 0:
        raise ValueError(
            f"samples must hold permutations of N >= 1 items, got shape {tuple(samples.shape)}"
        )
    if n > MAX_ENUMERATE_N:
        raise ValueError(
            f"samples hold permutations of N = {n} items: their pmf over all N! permutations is "
            f"too large to enumerate (limit N <= {MAX_ENUMERATE_N}); compare samples through "
            f"statistics of them instead (e.g. distances to a reference permutation)"
        )


def empirical_pmf(samples):
    """Frequencies of every permutation in ``samples``, aligned with ``all_permutations(N)``.

    .. math::

        \\hat p(\\pi) = \\frac{1}{S} \\sum_{s=1}^{S} [\\pi_s = \\pi]

    ``samples`` may be long permutations ``(..., S, N)``, permutation matrices, or relaxed
    matrices ``(..., S, N, N)`` (doubly stochastic or not), which are first rounded to their
    nearest permutation with :func:`~pyro_permutations.ops.matching` (as [BP] section 5 does
    with its variational samples). Leading dimensions are batch dimensions.

    :param torch.Tensor samples: ``(..., S, N)`` integer or ``(..., S, N, N)`` floating
        (float32 or float64, finite).
    :returns: float64 tensor ``(..., N!)`` summing to one along the last axis.

    Example::

        >>> import torch
        >>> empirical_pmf(torch.tensor([[0, 1, 2], [0, 1, 2], [2, 1, 0], [0, 1, 2]]))
        tensor([0.7500, 0.0000, 0.0000, 0.0000, 0.0000, 0.2500], dtype=torch.float64)
    """
    if not isinstance(samples, torch.Tensor):
        raise TypeError(f"samples must be a torch.Tensor, got {type(samples).__name__}")
    if samples.dtype.is_floating_point:
        check_floating(samples, "samples")
        if samples.dim() < 3 or samples.shape[-1] != samples.shape[-2]:
            raise ValueError(
                f"floating samples must be matrices of shape (..., S, N, N), got "
                f"{tuple(samples.shape)}"
            )
        _check_items(samples)
        check_no_nan(samples, "samples")
        if torch.isinf(samples).any():
            raise ValueError(
                "samples contains an infinite entry; relaxed samples must be finite matrices "
                "(..., S, N, N)"
            )
        samples = matching(samples)  # checked here, so its errors cannot name its "scores"
    else:
        if samples.dim() < 2:
            raise ValueError(
                f"samples must have shape (..., S, N) (a sample axis and the permutation), "
                f"got {tuple(samples.shape)}"
            )
        _check_items(samples)
        check_perm(samples, "samples")
    n = samples.shape[-1]
    size = math.factorial(n)
    batch_shape, count = samples.shape[:-2], samples.shape[-2]
    if count == 0:
        raise ValueError("samples holds no sample (S = 0); draw at least one")
    ranks = perm_to_rank(samples).reshape(-1, count)
    offsets = torch.arange(ranks.shape[0], device=ranks.device)[:, None] * size
    counts = torch.bincount((ranks + offsets).reshape(-1), minlength=ranks.shape[0] * size)
    return (counts.double() / count).reshape(batch_shape + (size,))
