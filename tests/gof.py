"""Goodness of fit of counts against an exact pmf, shared by the tests."""

import torch
from pyro.distributions.testing.gof import multinomial_goodness_of_fit


def pooled_goodness_of_fit(probs, counts, min_expected=10):
    """Pearson's test of ``counts`` against ``probs``, with the cells of expected count below
    ``min_expected`` merged into one (or dropped, when even together they are too rare).
    Returns the p-value."""
    probs, counts = probs.double(), counts.double()
    total = int(counts.sum())
    big = probs * total >= min_expected
    rest_p = probs[~big].sum()
    if rest_p * total >= min_expected:
        p = torch.cat([probs[big], rest_p[None]])
        c = torch.cat([counts[big], counts[~big].sum()[None]])
        return multinomial_goodness_of_fit(p, c)
    return multinomial_goodness_of_fit(probs[big], counts[big], total_count=total)
