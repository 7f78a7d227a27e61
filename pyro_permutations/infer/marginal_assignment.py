"""Marginal assignment probabilities of permutation draws: how often row ``i`` took column
``j``, the summary a user compares when ``N!`` is too large for a pmf."""

import math

import torch

from pyro_permutations.ops._validation import check_perm

__all__ = ["marginal_assignment"]


def marginal_assignment(samples, dim=-2):
    """The frequency with which each row took each column among permutation draws.

    .. math::

        \\hat M_{ij} = \\frac{1}{S} \\sum_{s=1}^{S} [\\pi_s(i) = j]

    a doubly stochastic ``(N, N)`` matrix, the mean of the draws' permutation matrices (the
    posterior's marginals when the draws are a posterior's). Unlike an
    :func:`~pyro_permutations.infer.empirical_pmf` over all ``N!`` permutations, it is
    meaningful at any ``N``; two long runs of one sampler differ in it by their Monte Carlo
    error.

    :param torch.Tensor samples: long permutations ``(..., S, ..., N)``, ``perm[i] = j``
        meaning row ``i`` took column ``j``.
    :param int dim: the sample dimension averaged over; ``dim=(0, 1)`` or any tuple averages
        over several (e.g. the samples and chains of ``MCMC.get_samples()``), and ``None``
        over every dimension but the last.
    :returns: float64 tensor ``(..., N, N)`` (the remaining dimensions, then rows and
        columns), each row and column summing to one.

    Example::

        >>> import torch
        >>> draws = torch.tensor([[0, 1, 2], [1, 0, 2], [0, 1, 2], [0, 1, 2]])
        >>> marginal_assignment(draws, dim=0)
        tensor([[0.7500, 0.2500, 0.0000],
                [0.2500, 0.7500, 0.0000],
                [0.0000, 0.0000, 1.0000]], dtype=torch.float64)
    """
    check_perm(samples, "samples")
    if samples.dim() < 2:
        raise ValueError(
            f"samples must have shape (..., S, N) with a sample dimension, got "
            f"{tuple(samples.shape)}"
        )
    if dim is None:
        dims = tuple(range(samples.dim() - 1))
    else:
        dims = (dim,) if isinstance(dim, int) and not isinstance(dim, bool) else tuple(dim)
        if not dims or not all(isinstance(d, int) and not isinstance(d, bool) for d in dims):
            raise ValueError(f"dim must be an int, a tuple of ints or None, got {dim!r}")
        rank = samples.dim()
        normal = []
        for d in dims:
            if not -rank <= d < rank or d % rank == rank - 1:
                raise ValueError(
                    f"dim={dim!r} must name sample dimensions of samples of shape "
                    f"{tuple(samples.shape)}, not its last (the permutation's items)"
                )
            normal.append(d % rank)
        if len(set(normal)) != len(normal):
            raise ValueError(f"dim={dim!r} names a dimension twice")
        dims = tuple(normal)
    if any(samples.shape[d] == 0 for d in dims):
        raise ValueError("samples holds no draw along dim; pass at least one")
    n = samples.shape[-1]
    kept = [d for d in range(samples.dim() - 1) if d not in dims]
    rest = tuple(samples.shape[d] for d in kept)
    moved = samples.long().permute(list(dims) + kept + [samples.dim() - 1])
    moved = moved.reshape(-1, math.prod(rest), n)  # (draws, R, N)
    count = moved.shape[0]
    # counts by bincount of (r, i, perm[i]) cells: memory of the draws, not of N x N per draw
    cells = torch.arange(moved.shape[1], device=samples.device)[:, None] * n * n
    cells = cells + torch.arange(n, device=samples.device) * n + moved
    counts = torch.bincount(cells.reshape(-1), minlength=moved.shape[1] * n * n)
    return (counts.to(torch.float64) / count).reshape(rest + (n, n))
