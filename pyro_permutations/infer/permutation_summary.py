"""Convergence diagnostics of permutation-valued MCMC draws: effective sample sizes and split
R-hat of permutation functionals, by chain."""

import math

import torch
from pyro.ops.stats import effective_sample_size, split_gelman_rubin

from pyro_permutations.infer.marginal_assignment import marginal_assignment
from pyro_permutations.ops import hamming_distance, matching
from pyro_permutations.ops._validation import check_perm

__all__ = ["get_chains", "permutation_summary"]


def get_chains(mcmc):
    """The draws of a :class:`pyro.infer.MCMC` run with chains first, ``(chains, S, ...)``.

    ``MCMC`` keeps its own chains (``MCMC(..., num_chains=K)``) first and, with a
    :class:`~pyro_permutations.infer.PermutationKernel` of ``num_chains=C > 1``, the kernel's
    vectorised chains after the sample dimension; this merges both into one chain dimension
    of ``K * C`` chains (``K`` outer).

    :param pyro.infer.MCMC mcmc: a finished run.
    :returns: dict of tensors ``(chains, S, ...)`` keyed by site name.
    """
    samples = mcmc.get_samples(group_by_chain=True)
    c = getattr(mcmc.kernel, "num_chains", 1) if _vectorised(mcmc.kernel) else 1
    out = {}
    for name, value in samples.items():
        if c > 1:  # (K, S, C, ...) -> (K * C, S, ...)
            value = value.movedim(2, 1)
            value = value.reshape((-1,) + value.shape[2:])
        out[name] = value
    return out


def _vectorised(kernel):
    from pyro_permutations.infer.permutation_kernel import PermutationKernel

    return isinstance(kernel, PermutationKernel)


def _stats(x):
    """Mean, standard deviation, effective sample size and split R-hat of ``x`` ``(C, S,
    ...)``, float64; ``n_eff`` and ``r_hat`` are NaN where ``x`` does not vary (Pyro's
    estimators divide by its variance)."""
    x = x.to(torch.float64)
    flat = x.reshape((-1,) + x.shape[2:])
    constant = (flat == flat[:1]).all(0)
    n_eff = effective_sample_size(x, chain_dim=0, sample_dim=1)
    r_hat = split_gelman_rubin(x, chain_dim=0, sample_dim=1) if x.shape[1] >= 4 else None
    if r_hat is None:
        r_hat = torch.full(x.shape[2:], math.nan, dtype=torch.float64)
    nan = torch.tensor(math.nan, dtype=torch.float64)
    return {
        "mean": flat.mean(0),
        "std": flat.std(0) if flat.shape[0] > 1 else torch.zeros_like(flat[0]),
        "n_eff": torch.where(constant, nan, n_eff),
        "r_hat": torch.where(constant, nan, r_hat),
    }


def permutation_summary(chains, reference=None, items=False, print_table=True):
    """Effective sample size and split R-hat of functionals of permutation draws.

    A permutation has no mean; its chains are judged by scalar functionals, each with
    Pyro's estimators (:func:`pyro.ops.stats.effective_sample_size`,
    :func:`pyro.ops.stats.split_gelman_rubin`):

    - ``hamming``: the Hamming distance ``#{i : pi(i) != ref(i)}`` of each draw to a
      reference, by default the *mode of the marginals*, the matching of
      :func:`~pyro_permutations.infer.marginal_assignment` over all chains (the assignment
      that the draws agree on most);
    - ``position``: the column ``pi(i)`` of each row ``i`` (one row per item; summarised by the
      smallest effective sample size and the largest R-hat over the items that move, and
      listed whole with ``items=True``).

    :param chains: a finished :class:`pyro.infer.MCMC` run, or a dict of long permutation
        draws ``(chains, S, ..., N)`` keyed by site name (e.g. from :func:`get_chains`), or one
        such tensor. Continuous sites are skipped (``MCMC.summary`` covers them).
    :param reference: a permutation ``(..., N)`` (or a dict of them by site) to measure the
        Hamming distance from, e.g. the truth in a simulation.
    :param bool items: also list the statistics of every row's position.
    :param bool print_table: print the table.
    :returns: dict keyed by site name of dicts ``{"hamming": stats, "position": stats}``,
        each ``stats`` a dict of tensors ``mean``, ``std``, ``n_eff``, ``r_hat`` (``hamming``
        of the site's batch shape, ``position`` of its batch shape + ``(N,)``).

    Example::

        >>> import torch
        >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
        <torch._C.Generator object at ...>
        >>> draws = torch.stack([torch.randperm(4) for _ in range(2 * 100)]).reshape(2, 100, 4)
        >>> out = permutation_summary({"pi": draws}, print_table=False)
        >>> float(out["pi"]["hamming"]["r_hat"]) < 1.1  # independent draws: converged
        True
    """
    if hasattr(chains, "get_samples") and hasattr(chains, "kernel"):
        chains = get_chains(chains)
    if isinstance(chains, torch.Tensor):
        chains = {"value": chains}
    if not isinstance(chains, dict):
        raise TypeError(
            f"chains must be an MCMC run, a dict of draws (chains, S, ..., N) keyed by site "
            f"name, or one such tensor; got {type(chains).__name__}"
        )
    out = {}
    for name, draws in chains.items():
        if draws.dtype.is_floating_point or draws.dtype == torch.bool:
            continue
        check_perm(draws, name)
        if draws.dim() < 3:
            raise ValueError(
                f"the draws of {name!r} must have shape (chains, S, ..., N), got "
                f"{tuple(draws.shape)}; a single chain is (1, S, N)"
            )
        if draws.shape[1] < 2:
            raise ValueError(
                f"the draws of {name!r} hold S = {draws.shape[1]} sample per chain; effective "
                f"sample sizes need S >= 2"
            )
        ref = reference.get(name) if isinstance(reference, dict) else reference
        if ref is None:
            marginals = marginal_assignment(draws, dim=(0, 1))
            ref = matching(marginals)
        else:
            check_perm(ref, "reference")
            if ref.shape[-1] != draws.shape[-1]:
                raise ValueError(
                    f"reference holds permutations of {ref.shape[-1]} items; the draws of "
                    f"{name!r} have N = {draws.shape[-1]}"
                )
        hamming = hamming_distance(draws, ref.to(draws.device))
        out[name] = {"hamming": _stats(hamming), "position": _stats(draws)}
    if print_table:
        print(_table(out, items))
    return out


COLUMNS = ("mean", "std", "n_eff", "r_hat")


def _fmt(x):
    x = float(x)
    return "nan" if math.isnan(x) else f"{x:.2f}"


def _row(label, stats, index):
    values = " ".join(f"{_fmt(stats[k].reshape(-1)[index]):>9}" for k in COLUMNS)
    return f"{label:>28} {values}"


def _table(out, items):
    lines = [f"{'':>28} " + " ".join(f"{k:>9}" for k in COLUMNS)]
    for name, stats in out.items():
        h, p = stats["hamming"], stats["position"]
        shape = tuple(h["mean"].shape)
        for index in range(math.prod(shape)):
            key = [int(i) for i in torch.unravel_index(torch.tensor(index), shape)] if shape else []
            lines.append(_row(f"{name}{key if key else ''} hamming", h, index))
        moving = ~torch.isnan(p["r_hat"])
        if moving.any():
            lines.append(
                f"{name + ' positions':>28} {'':>9} {'':>9} "
                f"{_fmt(p['n_eff'][moving].min()):>9} {_fmt(p['r_hat'][moving].max()):>9}"
                f"   (min n_eff, max r_hat over {int(moving.sum())} moving items)"
            )
        else:
            lines.append(f"{name + ' positions':>28}   no item moved in any chain")
        if items:
            for index in range(p["mean"].numel()):
                lines.append(_row(f"{name} position[{index}]", p, index))
    return "\n".join(lines)
