"""The exact posterior over all ``N!`` permutations (or all partial matchings) of a Pyro model,
by vectorised enumeration."""

import math
import re
import warnings

import pyro.poutine as poutine
import torch
from pyro.poutine.messenger import Messenger
from pyro.poutine.util import site_is_subsample

from pyro_permutations.constraints import (
    PartialBirkhoff,
    PartialPermutation,
    PartialPermutationMatrix,
)
from pyro_permutations.distributions.flat_birkhoff import FlatBirkhoff
from pyro_permutations.infer._plates import (
    ExtraDims,
    LatentSite,
    batched_log_joint,
    plate_nesting,
)
from pyro_permutations.ops import (
    all_partial_perms,
    all_permutations,
    num_partial_perms,
    partial_perm_to_matrix,
    perm_to_matrix,
)
from pyro_permutations.ops._validation import MAX_ENUMERATE_N, check_device, is_int

__all__ = ["exact_posterior"]

PRIOR_MODES = ("model", "uniform")

#: Largest number of partial matchings :func:`exact_posterior` enumerates (``N = M = 7`` has
#: 130,922; ``N = 7, M = 8`` has 394,353).
MAX_ENUMERATE_PARTIAL = 500_000

#: Site kinds whose values are long vectors (the others are matrices).
_VECTOR_KINDS = ("perm", "partial")


class _SiteFound(Exception):
    def __init__(self, fn):
        self.fn = fn


class _LatentFound(Exception):
    def __init__(self, name):
        self.name = name


class _LatentCheck(Messenger):
    """Stops the model at the first sample site other than ``site`` that is not observed,
    before it is sampled (its prior may be improper, and its value would break the vectorised
    trace)."""

    def __init__(self, site):
        self.site = site
        super().__init__()

    def _pyro_sample(self, msg):
        if msg["name"] != self.site and not msg["is_observed"] and not site_is_subsample(msg):
            raise _LatentFound(msg["name"])


class _SiteProbe(_LatentCheck):
    """Stops the model at ``site`` and reports the distribution there, or at a latent site
    before it (as :class:`_LatentCheck`)."""

    def _pyro_sample(self, msg):
        if msg["name"] == self.site:
            raise _SiteFound(msg["fn"])
        super()._pyro_sample(msg)


def _latent_error(site, name, before=False):
    hint = (
        f" (it comes before {site!r}; if {site!r} is not a sample site of the model, check "
        "the name)"
        if before
        else ""
    )
    return ValueError(
        f"exact_posterior needs every sample site other than {site!r} observed, but "
        f"{name!r} is latent; condition the model on it (pyro.condition) first{hint}"
    )


def _probe(model, site, args, kwargs):
    try:
        with poutine.block(), _SiteProbe(site):
            model(*args, **kwargs)
    except _SiteFound as found:
        return found.fn
    except _LatentFound as found:
        raise _latent_error(site, found.name, before=True) from None
    except NotImplementedError as e:  # an earlier site could not be sampled
        raise ValueError(
            f"site={site!r} was not reached: the model raised before it ({e}); is it a sample "
            f"site of the model?"
        ) from e
    raise ValueError(f"site={site!r} is not a sample site of the model")


def _wrapped(fn):
    """``fn`` and the distributions it wraps, outermost first: the ``base_dist`` chain of
    Independent, masked, expanded and transformed distributions (e.g. ``StickBreakingBirkhoff``,
    a transformed ``Normal(loc, scale).to_event(2)``)."""
    seen = set()
    while fn is not None and id(fn) not in seen:
        seen.add(id(fn))
        yield fn
        fn = getattr(fn, "base_dist", None)


def _site_dtype_device(fn, site, kind, dtype, device):
    """The dtype and device of the values enumerated at a site with distribution ``fn``:
    ``dtype`` and ``device`` where given, else those of the first floating tensor held by
    ``fn`` or a distribution it wraps (its parameters); else the distribution's own ``device``
    (``UniformPermutation``), the device of any tensor it holds, or torch's defaults."""
    if kind in _VECTOR_KINDS:
        if dtype is not None:
            raise ValueError(
                f"value_dtype applies to a site holding matrices, but site {site!r} holds "
                f"{'partial ' if kind == 'partial' else ''}permutations (long tensors of shape "
                "(N,)); leave value_dtype=None"
            )
        dtype = torch.long
    elif dtype is not None and not (isinstance(dtype, torch.dtype) and dtype.is_floating_point):
        raise ValueError(
            f"value_dtype must be a floating torch.dtype such as torch.float64, got {dtype!r}"
        )
    if device is not None:
        device = check_device(device, "value_device")
    tensors = [
        value for d in _wrapped(fn) for value in vars(d).values() if isinstance(value, torch.Tensor)
    ]
    floating = [t for t in tensors if t.dtype.is_floating_point]
    own = [d.device for d in _wrapped(fn) if isinstance(getattr(d, "device", None), torch.device)]
    found = [t.device for t in floating] + own + [t.device for t in tensors]
    default = torch.empty(())
    dtype = dtype or (floating[0].dtype if floating else default.dtype)
    return dtype, device or (found[0] if found else default.device)


def _first_trace(model, site, value, args, kwargs):
    """One plain trace of the model with ``site`` at ``value`` (no batch dimension), after
    checking that every other sample site is observed; a model that fails on ``value``'s dtype
    or device gets a hint to pass ``value_dtype`` or ``value_device``."""
    conditioned = poutine.condition(model, data={site: value})
    try:
        with _LatentCheck(site):
            return poutine.trace(conditioned).get_trace(*args, **kwargs)
    except _LatentFound as found:
        raise _latent_error(site, found.name) from None
    except RuntimeError as e:
        if value.dtype.is_floating_point and re.search(r"dtype|scalar type", str(e), re.I):
            raise ValueError(
                f"the model failed on a permutation matrix of dtype {value.dtype} at site "
                f"{site!r} ({str(e).splitlines()[0]}); if the model computes in another dtype, "
                f"pass it as value_dtype (e.g. value_dtype=torch.float64)"
            ) from e
        if re.search(r"device", str(e), re.I):
            raise ValueError(
                f"the model failed on a value on {value.device} at site {site!r} "
                f"({str(e).splitlines()[0]}); if the model computes on another device, pass it "
                f"as value_device (e.g. value_device='cuda')"
            ) from e
        raise


#: The plate that carries the values; a model's error that names it is about the model's shapes.
_VALUES_PLATE = "_exact_posterior_values"


def _items_hint(site, kind):
    """What to write when a site's shapes do not line up with the batch of values."""
    event = "to_event(1)" if kind in _VECTOR_KINDS else "to_event(2)"
    return (
        f"exact_posterior gives {site!r} a batch of values along a dimension left of the "
        f"model's plates, so the likelihood must broadcast over it. Indexing with a "
        f"permutation (mu[pi]) keeps pi's item axis, its event dimension, as the last "
        f"dimension of the result: inside a pyro.plate over the items that axis lines up with "
        f"the plate but pushes the values' dimension one place left, and without a plate it "
        f"is a batch dimension that no plate declares. Declare the items an event dimension "
        f"instead, outside any plate over them: pyro.sample('y', dist.Normal(mu[pi], "
        f"sigma).{event}, obs=y) (the same likelihood, summed over the items)"
    )


def _values(perms, kind, dtype, num_cols=None):
    """The site's values at ``perms``: themselves, or their (partial) permutation matrices."""
    if kind in _VECTOR_KINDS:
        return perms
    if kind == "partial_matrix":
        return partial_perm_to_matrix(perms, num_cols, dtype=dtype)
    return perm_to_matrix(perms, dtype=dtype)


def _log_joint(model, site, value, nesting, prior, kind, args, kwargs):
    """``log p(value, data)`` for a batch of ``C`` values, shape ``(C,)``."""
    count = value.shape[0]
    skip = {site} if prior == "uniform" else set()
    try:
        return batched_log_joint(
            model, {site: value}, count, nesting, _VALUES_PLATE, args, kwargs, skip, value.device
        )
    except NotImplementedError as e:  # the site's distribution has no pmf
        raise ValueError(
            f"site {site!r}'s distribution has no log_prob ({e}); pass prior='uniform' for a "
            f"uniform prior over its values, or give the site a distribution with a pmf"
        ) from None
    except LatentSite as e:
        raise ValueError(
            f"exact_posterior needs every sample site other than {site!r} observed, but "
            f"{e.name!r} is latent; condition the model on it (pyro.condition) first"
        ) from None
    except ExtraDims as e:
        raise ValueError(
            f"site {e.name!r} has log_prob shape {e.shape}: more dimensions than the model's "
            f"{nesting} plate dimension(s) and the values' one. If the model has other batch "
            f"dimensions, declare them with pyro.plate (or pass max_plate_nesting). "
            f"{_items_hint(site, kind)}"
        ) from None
    except ValueError as e:
        if _VALUES_PLATE not in str(e):
            raise
        found = re.search(r"at site (\S+)", str(e))
        name = found.group(1) if found else "a site"
        raise ValueError(
            f"site {name!r} does not broadcast over the batch of values of {site!r} "
            f"({str(e).splitlines()[0]}). {_items_hint(site, kind)}"
        ) from None


def _plain_log_joint(model, site, value, prior, args, kwargs):
    """``log p(value, data)`` from one plain (unbatched) trace, float64 scalar, and whether
    any observed site counted."""
    trace = _first_trace(model, site, value, args, kwargs)

    def counted(name, node):
        return not site_is_subsample(node) and not (prior == "uniform" and name == site)

    trace.compute_log_prob(counted)  # with the model's poutine.scale and poutine.mask
    total, observed = 0.0, False
    for name, node in trace.nodes.items():
        if node["type"] == "sample" and counted(name, node):
            observed = observed or name != site
            total += float(node["log_prob"].double().sum())
    return total, observed


def _check_batch_use(model, site, perms, kind, dtype, num_cols, prior, log_joint, args, kwargs):
    """Warn, at the cost of one plain trace, if the vectorised log joint disagrees with a plain
    trace at the last permutation (the model mishandles the batch of values, e.g. reshapes
    it), or if it does not vary over the values although some site is observed."""
    last = _values(perms[-1:], kind, dtype, num_cols)[0]
    plain, observed = _plain_log_joint(model, site, last, prior, args, kwargs)
    batched = float(log_joint[-1])
    both_finite = math.isfinite(plain) and math.isfinite(batched)
    if (both_finite and abs(plain - batched) > 1e-4 * max(1.0, abs(plain))) or (
        math.isfinite(plain) != math.isfinite(batched)
    ):
        warnings.warn(
            f"exact_posterior: the model's log joint at permutation {perms[-1].tolist()} is "
            f"{batched:.6g} when {site!r} gets the batch of values but {plain:.6g} in a plain "
            f"trace, so the model does not treat the values' batch dimension as a batch (does "
            f"it reshape or flatten {site!r}?); the result is wrong. Index with ... and keep "
            f"the leading dimensions, as for Pyro's parallel enumeration",
            stacklevel=3,
        )
    elif observed and perms.shape[0] > 1 and bool((log_joint == log_joint[0]).all()):
        warnings.warn(
            f"exact_posterior: the log joint is the same at all {perms.shape[0]} values of "
            f"{site!r}, so the posterior is uniform: the observed sites do not depend on "
            f"{site!r} (check that the likelihood uses it)",
            stacklevel=3,
        )


def _site_kind(fn, site, event_shape):
    """``(kind, N, M)`` of a site: ``"perm"`` (long ``(N,)``), ``"matrix"`` (``(N, N)``),
    ``"partial"`` (long ``(N,)`` with support ``partial_permutation`` into ``M`` columns) or
    ``"partial_matrix"`` (``(N, M)`` with ``N != M``, or a support on partial matchings)."""
    support = fn.support
    if len(event_shape) == 1:
        n = event_shape[0]
        if not isinstance(support, PartialPermutation):
            return "perm", n, n
        if support.num_cols is None:
            raise ValueError(
                f"site {site!r} holds partial permutations into an unknown number of columns "
                f"(support {support}); give its distribution a support "
                f"PartialPermutation(num_cols=M) so that its values can be enumerated"
            )
        return "partial", n, int(support.num_cols)
    if len(event_shape) == 2:
        n, m = event_shape
        if n != m or isinstance(support, (PartialBirkhoff, PartialPermutationMatrix)):
            return "partial_matrix", n, m
        return "matrix", n, n
    raise ValueError(
        f"site {site!r} has event shape {event_shape}; exact_posterior needs permutations (N,), "
        f"square matrices (N, N), partial permutations (N,) or matrices (N, M)"
    )


def exact_posterior(
    model,
    site,
    *args,
    max_plate_nesting=None,
    chunk_size=8192,
    prior="model",
    log=False,
    value_dtype=None,
    value_device=None,
    **kwargs,
):
    """Exact posterior probabilities of all ``N!`` permutations at one site of a Pyro model.

    .. math::

        p(\\pi \\mid \\mathcal{D}) = \\frac{p(\\pi) \\, p(\\mathcal{D} \\mid \\pi)}
            {\\sum_{\\pi'} p(\\pi') \\, p(\\mathcal{D} \\mid \\pi')}

    for every permutation ``pi`` in ``all_permutations(N)`` order. The site may hold long
    permutations ``(N,)`` (e.g. :class:`~pyro_permutations.distributions.Mallows`) or matrices
    ``(N, N)`` (a relaxation such as ``StickBreakingBirkhoff`` or ``FlatBirkhoff``, with
    ``prior="uniform"``), in which case the model is evaluated at the permutation matrices
    ``P[i, perm[i]] = 1``. Every other sample site must be observed.

    **Partial matchings.** A site whose support is
    :class:`~pyro_permutations.constraints.PartialPermutation` into ``M`` columns (e.g.
    :class:`~pyro_permutations.distributions.UniformPartialMatching`), long ``(N,)`` with
    ``perm[i] = -1`` for an unmatched row (:mod:`pyro_permutations.ops.partial`), is enumerated
    over all ``num_partial_perms(N, M)`` partial permutations; a matrix site ``(N, M)`` with
    ``N != M``, or with a support on partial matchings (``partial_birkhoff``, as
    :class:`~pyro_permutations.distributions.PartialGumbelSinkhorn`, with ``prior="uniform"``;
    or ``partial_permutation_matrix``), over their matrices ``partial_perm_to_matrix(perm, M)``.
    The result is then aligned with ``all_partial_perms(N, M)``. A support marked
    ``complete`` (every item of the smaller side matched: ``PartialGumbelSinkhorn`` and
    ``PartialGumbelMatching`` without unmatched scores) is enumerated over the matchings of
    ``min(N, M)`` pairs only; the others get probability 0. A square ``(N, N)`` matrix
    site of any other support is enumerated over the ``N!`` permutations, as above; a uniform
    prior over partial matchings gives every one the same weight whatever its number of
    matches, so a model with a relaxed site adds the prior's dependence on the number of
    matches to its likelihood (a ``pyro.factor`` of ``P.sum()``).

    **Prior.** ``p(pi)`` is the site's own pmf only for a discrete site (its support is
    discrete, as for ``Mallows``, ``PlackettLuce``, ``UniformPermutation``). A continuous site
    (support the Birkhoff polytope or real matrices: ``FlatBirkhoff``, ``GumbelSinkhorn``,
    ``StickBreakingBirkhoff``, ``RoundingBirkhoff``, ``RoundingPrior``, ...) has a density,
    whose values at the vertices of the polytope are no probabilities of permutations (and are
    undefined, zero or infinite for most relaxations, whose densities live on the interior or
    on other variables); such a site needs ``prior="uniform"``. The exception is
    ``FlatBirkhoff``, whose constant density gives every permutation the same weight: for it
    ``prior="model"`` is ``prior="uniform"``.

    The model runs once per chunk of ``chunk_size`` values, vectorised: the values come in
    along a new batch dimension left of the model's plates (``dim = -(max_plate_nesting +
    1)``), so the model must broadcast over a leading batch dimension, as Pyro's parallel
    enumeration also requires (use ``pyro.plate`` for data dimensions and ``...`` indexing).
    A likelihood indexed by the permutation itself (``mu[pi]``, which keeps ``pi``'s item axis
    as its last dimension) declares the items an event dimension, not a plate:
    ``pyro.sample("y", dist.Normal(mu[pi], 1.0).to_event(1), obs=y)``; inside a
    ``pyro.plate`` over the items it raises a ``ValueError`` that says so. One plain trace at
    the last permutation checks the vectorised result: a model that mishandles the batch of
    values (reshapes or flattens it) gets a warning, as does a log joint that is the same at
    every value although some site is observed (a likelihood that ignores the site).

    :param callable model: a Pyro model.
    :param str site: the name of the permutation-valued sample site.
    :param int max_plate_nesting: number of plate dimensions the model uses; found by one
        trace of the model if not given.
    :param int chunk_size: values evaluated per model call (bounds memory).
    :param str prior: ``"model"`` uses the site's own pmf at each permutation (a discrete
        site only); ``"uniform"`` ignores it (a uniform prior over permutations), needed for a
        continuous site, e.g. any relaxation (see above).
    :param bool log: return log-probabilities instead.
    :param torch.dtype value_dtype: floating dtype of the permutation matrices a matrix site
        is given (named so that a model keyword ``dtype`` still reaches the model). By default
        the dtype of the site distribution's floating parameters (that of its own samples:
        ``GumbelSinkhorn``'s ``log_alpha``, or the base ``loc`` of a transformed distribution
        such as ``StickBreakingBirkhoff``), or ``torch.get_default_dtype()`` for a distribution
        without any, such as ``FlatBirkhoff``: pass ``value_dtype=torch.float64`` for a float64
        model with such a site. A permutation site gets long tensors (leave ``None``).
    :param value_device: device of the values the site is given (a ``torch.device`` or a
        string). By default that of the site distribution's parameters, found as for
        ``value_dtype`` (or its
        ``device``, as ``UniformPermutation``'s), or torch's default device for a distribution
        without any, such as ``FlatBirkhoff``: pass ``value_device="cuda"`` for a CUDA model with
        such a site.
    :returns: float64 tensor ``(N!,)`` aligned with ``all_permutations(N)`` (for partial
        matchings ``(num_partial_perms(N, M),)`` aligned with ``all_partial_perms(N, M)``), on
        the device of the model's log-probabilities.
    :raises ValueError: if ``N > 10`` (``10! = 3,628,800`` values), or for partial matchings
        ``num_partial_perms(N, M) > 500,000`` (``N = M = 7`` has 130,922), the site is missing,
        another site is latent (checked on one plain trace, before the vectorised ones), the
        site is continuous and ``prior="model"``, or the model fails on the values' dtype or
        device.

    Example, a permutation site and a likelihood indexed by it::

        >>> import pyro, pyro.distributions as dist, torch
        >>> from pyro_permutations.distributions import UniformPermutation
        >>> y = torch.tensor([1.0, 0.0, 2.0])
        >>> def indexed():
        ...     pi = pyro.sample("pi", UniformPermutation(3))
        ...     mu = torch.tensor([0.0, 1.0, 2.0])[pi]  # y[i] is centre pi[i]
        ...     pyro.sample("y", dist.Normal(mu, 0.3).to_event(1), obs=y)
        >>> int(exact_posterior(indexed, "pi").argmax())  # all_permutations(3)[2] = [1, 0, 2]
        2

    and a matrix site::

        >>> from pyro_permutations.distributions import FlatBirkhoff
        >>> centers = torch.tensor([[0.0], [1.0], [2.0]])
        >>> def model():
        ...     p = pyro.sample("P", FlatBirkhoff(3))
        ...     pyro.sample("y", dist.Normal(p @ centers, 0.5).to_event(2),
        ...                 obs=torch.tensor([[1.0], [0.0], [2.0]]))
        >>> probs = exact_posterior(model, "P", prior="uniform")
        >>> probs.shape, int(probs.argmax())  # all_permutations(3)[2] = [1, 0, 2]
        (torch.Size([6]), 2)

    and a partial matching of two objects to three detections, each object detected with
    probability 0.8, an unmatched detection clutter of density 0.1::

        >>> import math
        >>> from pyro_permutations.distributions import UniformPartialMatching
        >>> from pyro_permutations.ops import all_partial_perms, partial_perm_to_matrix
        >>> objects = torch.tensor([[0.0], [1.0]])
        >>> detections = torch.tensor([[1.1], [5.0], [0.1]])
        >>> def tracking():
        ...     a = pyro.sample("a", UniformPartialMatching(2, 3, 0.8))
        ...     p = partial_perm_to_matrix(a, 3)  # (..., 2, 3): object i is detection a[i]
        ...     pair = dist.Normal(objects, 0.2).log_prob(detections.T)  # (2, 3)
        ...     pyro.factor("detections", (p * (pair - math.log(0.1))).sum((-2, -1)))
        >>> probs = exact_posterior(tracking, "a")
        >>> probs.shape, all_partial_perms(2, 3)[probs.argmax()].tolist()
        (torch.Size([13]), [2, 0])
    """
    if prior not in PRIOR_MODES:
        raise ValueError(f"prior must be one of {PRIOR_MODES}, got {prior!r}")
    if not (is_int(chunk_size) and chunk_size >= 1):
        raise ValueError(f"chunk_size must be a positive int, got {chunk_size!r}")
    if max_plate_nesting is not None and not (is_int(max_plate_nesting) and max_plate_nesting >= 0):
        raise ValueError(
            f"max_plate_nesting must be None or a non-negative int, got {max_plate_nesting!r}"
        )
    chunk_size = int(chunk_size)
    max_plate_nesting = None if max_plate_nesting is None else int(max_plate_nesting)
    fn = _probe(model, site, args, kwargs)
    event_shape = tuple(fn.event_shape)
    kind, n, m = _site_kind(fn, site, event_shape)
    if math.prod(fn.batch_shape) != 1:
        raise ValueError(
            f"site {site!r} has batch shape {tuple(fn.batch_shape)}: it holds several "
            f"permutations, whose joint posterior has (N!)^k states; exact_posterior handles one"
        )
    if kind in ("partial", "partial_matrix"):
        count = num_partial_perms(n, m)
        if count > MAX_ENUMERATE_PARTIAL:
            raise ValueError(
                f"site {site!r} holds partial matchings of N = {n} rows into M = {m} columns: "
                f"their {count:,} values are too many to enumerate (limit "
                f"{MAX_ENUMERATE_PARTIAL:,}, e.g. N = M = 7); compare with samples instead"
            )
    elif n > MAX_ENUMERATE_N:
        raise ValueError(
            f"site {site!r} holds permutations of N = {n} items: {n}! values are too many to "
            f"enumerate (limit N <= {MAX_ENUMERATE_N}); compare with samples instead"
        )
    if prior == "model" and isinstance(fn, FlatBirkhoff):
        prior = "uniform"  # a constant density: the same weight at every permutation matrix
    partial = kind in ("partial", "partial_matrix")
    noun = "partial matching" if partial else "permutation"
    example = "UniformPartialMatching" if partial else "Mallows"
    if prior == "model" and not getattr(fn.support, "is_discrete", False):
        raise ValueError(
            f"site {site!r} has a continuous distribution ({type(fn).__name__}, support "
            f"{fn.support}): its density at a permutation matrix is no probability of that "
            f"permutation (and for most relaxations it is undefined, zero or infinite there); "
            f"pass prior='uniform' for a uniform prior over {noun}s, or give the site a "
            f"discrete distribution over {noun}s (e.g. {example}) for another prior"
        )
    dtype, device = _site_dtype_device(fn, site, kind, value_dtype, value_device)
    if partial:
        every = all_partial_perms(n, m, device=device)
        # A complete support: only the matchings of min(N, M) pairs are values of the site.
        complete = (
            ((every >= 0).sum(-1) == min(n, m)) if getattr(fn.support, "complete", False) else None
        )
        perms = every if complete is None else every[complete]
    else:
        perms, complete = all_permutations(n, device=device), None
    trace = _first_trace(model, site, _values(perms[:1], kind, dtype, m)[0], args, kwargs)
    if max_plate_nesting is None:
        max_plate_nesting = plate_nesting(trace)
    shape = (1,) * max_plate_nesting + event_shape
    parts = []
    for start in range(0, perms.shape[0], chunk_size):
        chunk = _values(perms[start : start + chunk_size], kind, dtype, m)
        value = chunk.reshape((chunk.shape[0],) + shape)
        parts.append(_log_joint(model, site, value, max_plate_nesting, prior, kind, args, kwargs))
    log_joint = torch.cat(parts)
    _check_batch_use(model, site, perms, kind, dtype, m, prior, log_joint, args, kwargs)
    if torch.isnan(log_joint).any():
        bad = perms[int(torch.isnan(log_joint).nonzero()[0, 0])].tolist()
        raise ValueError(
            f"the model's log joint is NaN at permutation {bad}; check the model's densities "
            f"at permutation values (or pass prior='uniform' if only the site's density fails)"
        )
    if not torch.isfinite(log_joint).any():
        raise ValueError(
            "every permutation has zero joint probability (log p = -inf or NaN); check the "
            "model, or pass prior='uniform' if the site's density vanishes at permutations"
        )
    log_post = log_joint - torch.logsumexp(log_joint, 0)
    if complete is not None:  # aligned with all_partial_perms(N, M): 0 off the support
        log_post = torch.full(
            complete.shape, -math.inf, dtype=log_post.dtype, device=log_post.device
        ).masked_scatter(complete, log_post)
    return log_post if log else log_post.exp()
