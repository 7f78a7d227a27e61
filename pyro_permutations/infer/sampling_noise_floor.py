"""The distance that Monte Carlo error alone gives: how far the empirical pmf of ``S`` exact
draws from a pmf lies from that pmf."""

import numbers

import torch

from pyro_permutations.infer.pmf_distances import _check_pmfs, hellinger_distance

__all__ = ["sampling_noise_floor"]


def sampling_noise_floor(pmf, num_samples, distance=hellinger_distance, repeats=20, generator=None):
    """Expected distance between a pmf and the empirical pmf of ``num_samples`` draws from it.

    .. math::

        \\mathbb{E}\\big[d(p, \\hat p_S)\\big], \\qquad
        \\hat p_S = \\tfrac{1}{S}\\,\\mathrm{counts}, \\quad
        \\mathrm{counts} \\sim \\mathrm{Multinomial}(S, p),

    estimated by the mean over ``repeats`` independent draws of the counts. A method scored by
    ``d(exact, empirical pmf of its S samples)`` cannot be told apart from a perfect sampler
    below this value: it is the noise floor of the score. For the Hellinger distance and
    ``S`` large against the number of outcomes ``K`` with mass,
    ``E[H^2] ~ (K - 1) / (8 S)``: a pmf spread evenly over 100 permutations has a floor near
    0.11 at ``S = 1000`` however good the method, and the uniform pmf over the 720
    permutations of six items one of about 0.4 (where ``S`` is not large against ``K``).

    :param torch.Tensor pmf: probabilities ``(..., K)``, summing to one on the last axis.
    :param int num_samples: ``S``, the number of draws behind each empirical pmf.
    :param callable distance: ``distance(p, q)`` of two pmfs ``(..., K)``, shape ``(...)``;
        the Hellinger distance ([BP]'s "BD") by default.
    :param int repeats: independent empirical pmfs averaged over.
    :param torch.Generator generator: optional, for reproducible draws.
    :return: the mean distance, shape ``pmf.shape[:-1]``, in ``pmf``'s dtype.
    :raises ValueError: if ``pmf`` is not a pmf, or ``num_samples`` or ``repeats`` is not a
        positive integer.

    Example::

        >>> import torch
        >>> g = torch.Generator().manual_seed(0)
        >>> point_mass = torch.tensor([0.0, 1.0, 0.0], dtype=torch.float64)
        >>> sampling_noise_floor(point_mass, 10, generator=g)  # every draw is the same outcome
        tensor(0., dtype=torch.float64)
        >>> uniform = torch.full((720,), 1 / 720, dtype=torch.float64)
        >>> floor = sampling_noise_floor(uniform, 1000, generator=g)
        >>> 0.35 < float(floor) < 0.45  # 1,000 draws of a pmf over 720 outcomes
        True
    """
    for name, value in (("num_samples", num_samples), ("repeats", repeats)):
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    pmf, _ = _check_pmfs(pmf, pmf)
    batch, k = pmf.shape[:-1], pmf.shape[-1]
    flat = pmf.reshape(-1, k)
    if flat.shape[0] == 0:
        return pmf.new_zeros(batch)
    # One multinomial per (repeat, pmf): draw indices with replacement, then count them.
    probs = flat.repeat(repeats, 1)
    draws = torch.multinomial(probs, int(num_samples), replacement=True, generator=generator)
    counts = torch.zeros_like(probs).scatter_add_(
        1, draws, torch.ones_like(draws, dtype=probs.dtype)
    )
    empirical = counts / num_samples
    d = distance(probs, empirical).reshape(repeats, -1)
    return d.mean(0).reshape(batch).to(pmf.dtype)
