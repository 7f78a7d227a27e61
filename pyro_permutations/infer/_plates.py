"""A model's plate nesting, and its log joint at a batch of values along a dimension left of its
plates: shared by :func:`~pyro_permutations.infer.exact_posterior` (the batch holds all
permutations) and :class:`~pyro_permutations.infer.PermutationKernel` (the batch holds chains
and proposals)."""

import pyro
import pyro.poutine as poutine
import torch
from pyro.poutine.util import site_is_subsample


class LatentSite(Exception):
    """A sample site that is neither observed nor given a value; ``name`` is the site."""

    def __init__(self, name):
        super().__init__(name)
        self.name = name


class ExtraDims(Exception):
    """A site's log-probability has more dimensions than the plates and the batch of values;
    ``name`` is the site, ``shape`` that of its log-probability."""

    def __init__(self, name, shape):
        super().__init__(name, shape)
        self.name, self.shape = name, shape


def plate_nesting(trace):
    """The number of plate dimensions a trace uses, ``max(-frame.dim)`` over the vectorised
    plates of its sample sites (0 without any)."""
    return max(
        [
            -frame.dim
            for node in trace.nodes.values()
            if node["type"] == "sample"
            for frame in node["cond_indep_stack"]
            if frame.vectorized
        ]
        + [0]
    )


def batched_log_joint(model, data, count, nesting, plate, args, kwargs, skip=(), device=None):
    """``log p(data, observations)`` at each of ``count`` values, ``(count,)`` float64.

    The model runs once, conditioned on ``data`` (site name to a value whose leading
    dimension, at ``dim = -(nesting + 1)``, holds the ``count`` values), inside
    ``pyro.plate(plate, count, dim=-(nesting + 1))``; every sample site's log-probability
    (with the model's ``poutine.scale`` and ``poutine.mask``) is summed over all but that
    dimension. Subsample sites and the sites named in ``skip`` are left out.

    :raises LatentSite: for a sample site neither observed nor in ``data``.
    :raises ExtraDims: for a log-probability with more than ``nesting + 1`` dimensions.
    """
    with pyro.plate(plate, count, dim=-(nesting + 1)):
        trace = poutine.trace(poutine.condition(model, data=data)).get_trace(*args, **kwargs)

    def counted(name, node):
        return not site_is_subsample(node) and name not in skip

    trace.compute_log_prob(counted)
    total = None
    for name, node in trace.nodes.items():
        if node["type"] != "sample" or not counted(name, node):
            continue
        if not node["is_observed"] and name not in data:
            raise LatentSite(name)
        lp = node["log_prob"]
        if lp.dim() > nesting + 1:
            raise ExtraDims(name, tuple(lp.shape))
        lp = lp.reshape((1,) * (nesting + 1 - lp.dim()) + lp.shape)
        lp = lp.reshape(lp.shape[0], -1).sum(-1).double()
        # On the log-probs' device, which is the model's when it moves the values itself; a
        # site scored on the CPU (a value's own device) joins an accelerator's.
        if total is None:
            total = lp
        elif lp.device != total.device and total.device.type == "cpu":
            total = total.to(lp.device) + lp
        else:
            total = total + lp.to(total.device)
    if total is None:
        return torch.zeros(count, dtype=torch.float64, device=device)
    return total.expand(count)
