"""Summaries of a fitted posterior over each worm's labels: the estimate and its spread.

Every method ends with draws of labels ``(S, J, N)`` (``labels[s, j, m] = n``: in draw ``s``,
observed neuron ``m`` of worm ``j`` is connectome neuron ``n``): a sampler's kept states, or
hard draws of a fitted guide. Their label frequencies

.. math::

    \\hat p_{jm}(n) = \\frac{1}{S} \\sum_{s=1}^{S} [\\mathrm{labels}_{s j m} = n]

give the estimate (the assignment maximising ``sum log p``, within the allowed pairs) and two
numbers over the unknown neurons ``U``:

.. math::

    \\mathrm{spread} = \\frac{1}{|U|} \\sum_{(j, m) \\in U} \\Big(1 - \\max_n \\hat p_{jm}(n)\\Big),
    \\qquad
    \\mathrm{truth\\ mass} = \\frac{1}{|U|} \\sum_{(j, m) \\in U} \\hat p_{jm}(\\pi^*_{jm}),

the posterior mass off each neuron's most frequent label (0 for a point mass) and the mass on
its true label ``pi*``. With ``S`` draws both are multiples of ``1/S`` per neuron.
"""

import math

import torch

from pyro_permutations.ops import matching

#: Hard draws of a guide per recorded spread.
GUIDE_DRAWS = 8


def label_frequencies(labels, n):
    """``p[j, m, n]``, the frequency of label ``n`` for neuron ``m`` of worm ``j`` among the
    draws ``labels`` ``(S, J, N)`` (long; the rows need not be permutations), float64. Counts
    by one ``bincount``: memory of the draws, not ``S`` one-hot ``N x N`` matrices."""
    draws, rest = labels.shape[0], labels.shape[1:]
    rows = math.prod(rest)
    cells = torch.arange(rows, device=labels.device) * n + labels.reshape(draws, rows).long()
    counts = torch.bincount(cells.reshape(-1), minlength=rows * n)
    return (counts.to(torch.float64) / draws).reshape(rest + (n,))


def chain_estimate(draws, burn_fraction, allowed):
    """The estimate of a chain from its states ``draws`` (a list of ``(J, N)``): the first
    ``burn_fraction`` of them dropped (the last state kept if that leaves none), the
    assignment maximising the log frequencies within ``allowed`` ``(J, N, N)``.

    :returns: ``(perm, freq)``: ``(J, N)`` long on the CPU and the frequencies ``(J, N, N)``.
    """
    kept = draws[math.floor(burn_fraction * len(draws)) :] or draws[-1:]
    freq = label_frequencies(torch.stack(kept), allowed.shape[-1])
    log_freq = freq.log().masked_fill(~allowed.to(freq.device), -math.inf)
    return matching(log_freq.cpu()), freq


def spread(freq, truth, known):
    """``(spread, truth mass)`` of the frequencies ``freq`` ``(J, N, N)`` over the unknown
    neurons (``~known``, ``(J, N)``); see the module docstring. ``nan`` if all are known."""
    unknown = ~known.to(freq.device)
    if not unknown.any():
        return math.nan, math.nan
    top = freq.max(-1).values[unknown]
    on_truth = freq.gather(-1, truth.to(freq.device)[..., None])[..., 0][unknown]
    return float(1 - top.mean()), float(on_truth.mean())
