"""A Pyro MCMC kernel for the permutation-valued sites of any Pyro model: random transpositions
and exact block-Gibbs moves over the permutations, vectorised HMC over the continuous sites,
many chains in one vectorised model call."""

import math

import pyro
import pyro.poutine as poutine
import torch
from pyro.infer.mcmc.mcmc_kernel import MCMCKernel
from pyro.poutine.messenger import Messenger
from pyro.poutine.util import site_is_subsample
from torch.distributions import biject_to, constraints
from torch.distributions.transforms import Transform

from pyro_permutations.constraints import Permutation
from pyro_permutations.infer._plates import ExtraDims, LatentSite, batched_log_joint, plate_nesting
from pyro_permutations.infer.exact_posterior import _site_dtype_device, _wrapped
from pyro_permutations.ops import all_permutations, matching
from pyro_permutations.ops._validation import check_perm, is_int

__all__ = ["PermutationKernel"]

PROPOSALS = ("swap", "block")
MAX_BLOCK_SIZE = 7  # 7! = 5,040 arrangements per chain and move
_CHAIN_PLATE = "_permutation_chains"


class _LongValues(Transform):
    """Maps long permutations to floats and back. ``pyro.infer.MCMC`` concatenates every site of
    a draw into one tensor, which turns the long permutations into floats beside a float site;
    its ``transforms[name].inv`` step (this transform's inverse) makes them long again."""

    domain = constraints.real
    codomain = constraints.real
    bijective = True

    def _call(self, x):
        return x.to(torch.get_default_dtype())

    def _inverse(self, y):
        return (y.round() if y.dtype.is_floating_point else y).long()

    def __eq__(self, other):
        return isinstance(other, _LongValues)


class _Probe(Messenger):
    """Records the latent sample sites of one plain run of the model and gives each a value
    without asking its distribution where that could fail: the identity at a matrix site
    treated as a permutation (a relaxation may have no ``sample``), a user's initial value
    where given, else a draw from the site's prior (or, if it has none, the point that
    ``biject_to(support)`` gives zero)."""

    def __init__(self, matrix_sites):
        self.matrix_sites = matrix_sites
        self.sites = {}
        super().__init__()

    def _pyro_sample(self, msg):
        if msg["is_observed"] or site_is_subsample(msg):
            return
        name, fn = msg["name"], msg["fn"]
        self.sites[name] = fn
        shape = tuple(fn.batch_shape) + tuple(fn.event_shape)
        if isinstance(fn.support, Permutation):
            device = _site_dtype_device(fn, name, "perm", None, None)[1]
            msg["value"] = torch.arange(fn.event_shape[-1], device=device).expand(shape)
        elif name in self.matrix_sites and len(fn.event_shape) == 2:
            dtype, device = _site_dtype_device(fn, name, "matrix", None, None)
            n = fn.event_shape[-1]
            msg["value"] = torch.eye(n, dtype=dtype, device=device).expand(shape)
        else:
            try:
                msg["value"] = fn.sample()
            except NotImplementedError:
                zero = torch.zeros(shape)
                msg["value"] = biject_to(fn.support)(zero)
        msg["done"] = True


def _partners(perm, rows, allowed):
    """``ok[c, j]``: row ``j`` may swap with row ``rows[c]`` in ``perm[c]``, i.e. ``j != rows[c]``
    and both rows may take the other's column (``allowed (N, N)`` or None), ``(C, N)``."""
    c, n = perm.shape
    arange = torch.arange(c, device=perm.device)
    if allowed is None:
        ok = torch.ones(c, n, dtype=torch.bool, device=perm.device)
    else:
        ok = allowed[rows[:, None], perm] & allowed[:, perm[arange, rows]].transpose(0, 1)
    ok[arange, rows] = False
    return ok


def _propose_swap(perm, allowed):
    """A random transposition of each permutation in ``perm`` ``(C, N)`` within the allowed
    pairs: row ``i`` uniform, its partner ``j`` uniform in ``A_i``. Returns the proposals
    ``(C, N)``, ``log q(perm | new) - log q(new | perm)`` ``(C,)`` float64, and whether each
    moved (a row without partners stays, and its ratio is zero)."""
    c, n = perm.shape
    arange = torch.arange(c, device=perm.device)
    i = torch.randint(n, (c,), device=perm.device)
    if allowed is None:  # every pair allowed: j uniform among the other rows, a ratio of one
        j = (i + torch.randint(1, max(n, 2), (c,), device=perm.device)) % n
        new = perm.clone()
        new[arange, i] = perm[arange, j]
        new[arange, j] = perm[arange, i]
        moved = torch.full((c,), n > 1, device=perm.device)  # N = 1: i = j, nothing moves
        return new, torch.zeros(c, dtype=torch.float64, device=perm.device), moved
    ok = _partners(perm, i, allowed)
    count_i = ok.sum(-1)
    moved = count_i > 0
    weights = ok.double() + (~moved)[:, None].double()  # no partners: any j, unused
    j = torch.multinomial(weights, 1).squeeze(-1)
    new = perm.clone()
    new[arange, i] = perm[arange, j]
    new[arange, j] = perm[arange, i]
    new = torch.where(moved[:, None], new, perm)
    count_j = _partners(perm, j, allowed).sum(-1)
    back_i = _partners(new, i, allowed).sum(-1)
    back_j = _partners(new, j, allowed).sum(-1)

    def log_rate(a, b):  # log(1/|A_i| + 1/|A_j|): the probability of picking the pair, times N
        return (1 / a.clamp(min=1).double() + 1 / b.clamp(min=1).double()).log()

    log_q = torch.where(moved, log_rate(back_i, back_j) - log_rate(count_i, count_j), 0.0)
    return new, log_q, moved


class PermutationKernel(MCMCKernel):
    """MCMC over the permutation-valued latent sites of a Pyro model, with HMC over its
    continuous sites, for :class:`pyro.infer.MCMC`.

    The target is the model's own joint density, evaluated by Pyro's trace machinery,

    .. math::

        p(\\pi, \\theta \\mid \\mathcal{D}) \\propto p(\\pi) \\, p(\\theta \\mid \\pi) \\,
            p(\\mathcal{D} \\mid \\pi, \\theta),

    where ``pi`` are the permutation sites and ``theta`` the continuous latent sites. One step
    of a chain updates, in turn, every permutation held by every permutation site (a site in a
    ``pyro.plate`` over ``J`` subjects holds ``J`` of them), with each of ``proposals``
    ``moves_per_step`` times:

    - ``"swap"``, a random transposition, accepted with the Metropolis-Hastings probability.
      A row ``i`` is drawn uniformly, then a partner ``j`` uniformly among the rows with which it
      may swap, ``A_i(\\pi) = \\{j \\ne i : \\mathrm{allowed}[i, \\pi_j],
      \\mathrm{allowed}[j, \\pi_i]\\}``; the proposal ``\\pi'`` (``\\pi`` with ``\\pi_i`` and
      ``\\pi_j`` exchanged) is accepted with probability

      .. math::

          \\min\\Big(1, \\frac{p(\\pi')}{p(\\pi)} \\,
              \\frac{1/|A_i(\\pi')| + 1/|A_j(\\pi')|}{1/|A_i(\\pi)| + 1/|A_j(\\pi)|}\\Big)

      (the second factor is one without forbidden pairs). A row without partners stays.
    - ``"block"``, block Gibbs: ``block_size = k`` distinct rows are drawn uniformly, and their
      columns are rearranged among them by an exact draw from the conditional over all ``k!``
      arrangements, evaluated in one vectorised model call. It is always accepted; its
      *move rate* (how often the arrangement changes) is reported instead.

    Then every continuous latent site is updated jointly by one Hamiltonian Monte Carlo
    transition in unconstrained space (``num_leapfrog`` leapfrog steps, identity mass, one
    step size per chain, adapted during warm-up to ``target_accept``; ``num_leapfrog=1`` is
    the Metropolis-adjusted Langevin algorithm). Each update leaves the posterior invariant,
    so their composition does.

    **Chains.** ``num_chains`` chains run at once, vectorised: the model runs once per move for
    all of them (and, for a block move, for all ``k!`` arrangements of all of them), its
    values coming in along a batch dimension left of the model's plates (``dim =
    -(max_plate_nesting + 1)``), as :func:`~pyro_permutations.infer.exact_posterior` and Pyro's
    parallel enumeration require: the model must broadcast over a leading batch dimension
    (``pyro.plate`` for data dimensions, ``...`` indexing, ``@`` for products). Use it with
    ``MCMC(kernel, ..., num_chains=1)``; the draws then have a chain dimension after the
    sample dimension (``(S, num_chains, ...)``; none when ``num_chains=1``), which
    :func:`~pyro_permutations.infer.get_chains` moves to the front.

    **Sites.** A site whose support is
    :data:`~pyro_permutations.constraints.permutation` (``Mallows``, ``PlackettLuce``,
    ``UniformPermutation``) is sampled with its own pmf as prior. A site holding matrices
    (``(..., N, N)``: ``FlatBirkhoff``, ``GumbelSinkhorn``, a stick-breaking or rounding
    relaxation) is treated as a permutation when named in ``sites``: the model sees the
    permutation matrices ``P[i, perm[i]] = 1`` in the site's dtype, and the site's density is
    left out (a uniform prior over permutations, as ``exact_posterior(..., prior="uniform")``);
    its draws are returned as permutations ``(..., N)``, not matrices. All other latent sites
    must be continuous (discrete ones are refused: marginalise them or condition on them).

    **Forbidden pairs.** ``allowed[i, j] = False`` forbids row ``i`` at column ``j``. They come
    from ``mask`` and from ``-inf`` entries of a site distribution's ``log_alpha``
    (``GumbelSinkhorn``, ``GumbelMatching``). Proposals only move between allowed pairs, so a
    chain never visits a forbidden one, and a model whose own density is zero somewhere
    (``-inf``) is never entered there: such a proposal is rejected and such an arrangement has
    probability zero.

    **Initial state.** ``init`` maps site names to values: a permutation ``(..., N)`` (the
    same for every chain, or one per chain ``(num_chains, ..., N)``); a floating score matrix
    ``(..., N, N)``, whose :func:`~pyro_permutations.ops.matching` (forbidden pairs excluded) is
    taken, e.g. a fitted guide's ``log_alpha``; or, for a continuous site, its value. Other
    permutations start at a random assignment within the allowed pairs (the matching of
    Gumbel noise), other continuous sites at a draw from their prior.

    **Diagnostics.** ``logging()`` (shown on Pyro's progress bar) and ``diagnostics()`` give
    the swap acceptance rate, the block move rate and the HMC acceptance rate and mean step
    size. :func:`~pyro_permutations.infer.permutation_summary` gives effective sample sizes and
    split R-hat of permutation functionals, :func:`~pyro_permutations.infer.marginal_assignment`
    how often each row sat at each column.

    :param callable model: a Pyro model.
    :param sites: names of the sites sampled as permutations (a string or a list); by default
        every latent site whose support is ``permutation``. A matrix site must be named here.
    :param int num_chains: chains run at once, vectorised.
    :param proposals: the moves applied to each permutation in each step, in order, each of
        ``"swap"`` and ``"block"`` at most once.
    :param int block_size: ``k``, rows per block move, ``2 <= k <= min(N, 7)``.
    :param int moves_per_step: how often each proposal is applied per permutation per step.
    :param mask: bool tensor ``(..., N, N)``, ``True`` where a row may take a column,
        broadcasting against a site's batch shape, or a dict of them keyed by site name.
    :param dict init: initial values keyed by site name (see above).
    :param int max_plate_nesting: the model's plate dimensions; found by one trace if omitted.
    :param float step_size: initial HMC step size of the continuous sites.
    :param int num_leapfrog: leapfrog steps per HMC transition.
    :param bool adapt_step_size: adapt each chain's step size during warm-up.
    :param float target_accept: the HMC acceptance rate that adaptation aims at.
    :raises ValueError: on a bad argument (naming it), a site that is missing, not a
        permutation or a discrete non-permutation latent, a mask or initial value of the wrong
        shape or with no assignment within the allowed pairs, or an initial state of zero
        density.

    Example::

        >>> import pyro, pyro.distributions as dist, torch
        >>> from pyro.infer import MCMC
        >>> from pyro_permutations.distributions import UniformPermutation
        >>> centers = torch.tensor([0.0, 1.0, 2.0, 3.0])
        >>> def model():
        ...     pi = pyro.sample("pi", UniformPermutation(4))
        ...     pyro.sample("y", dist.Normal(centers[pi], 0.3).to_event(1),
        ...                 obs=torch.tensor([1.0, 0.1, 3.1, 2.0]))
        >>> pyro.set_rng_seed(0)
        >>> kernel = PermutationKernel(model, num_chains=8)
        >>> mcmc = MCMC(kernel, num_samples=50, warmup_steps=20, disable_progbar=True)
        >>> mcmc.run()
        >>> draws = mcmc.get_samples()["pi"]  # (samples, chains, N)
        >>> draws.shape, draws.dtype
        (torch.Size([50, 8, 4]), torch.int64)
        >>> (draws == torch.tensor([1, 0, 3, 2])).all(-1).float().mean() > 0.5  # the mode
        tensor(True)
    """

    def __init__(
        self,
        model,
        sites=None,
        *,
        num_chains=1,
        proposals=PROPOSALS,
        block_size=3,
        moves_per_step=1,
        mask=None,
        init=None,
        max_plate_nesting=None,
        step_size=0.1,
        num_leapfrog=5,
        adapt_step_size=True,
        target_accept=0.65,
    ):
        if not callable(model):
            raise TypeError(f"model must be a callable Pyro model, got {type(model).__name__}")
        if isinstance(sites, str):
            sites = [sites]
        if sites is not None:
            sites = list(sites)
            if not sites or not all(isinstance(s, str) for s in sites):
                raise ValueError(f"sites must be a site name or a list of them, got {sites!r}")
            if len(set(sites)) != len(sites):
                raise ValueError(f"sites names a site twice: {sites!r}")
        if not (is_int(num_chains) and num_chains >= 1):
            raise ValueError(f"num_chains must be a positive int, got {num_chains!r}")
        if isinstance(proposals, str):
            proposals = (proposals,)
        proposals = tuple(proposals)
        if (
            not proposals
            or any(p not in PROPOSALS for p in proposals)
            or len(set(proposals)) != len(proposals)
        ):
            raise ValueError(
                f"proposals must be a non-empty sequence of distinct moves from {PROPOSALS}, got "
                f"{proposals!r}"
            )
        if not (is_int(block_size) and 2 <= block_size <= MAX_BLOCK_SIZE):
            raise ValueError(
                f"block_size must be an int from 2 to {MAX_BLOCK_SIZE} (rows rearranged per "
                f"block move; {MAX_BLOCK_SIZE}! = {math.factorial(MAX_BLOCK_SIZE):,} "
                f"arrangements), got {block_size!r}"
            )
        if not (is_int(moves_per_step) and moves_per_step >= 1):
            raise ValueError(f"moves_per_step must be a positive int, got {moves_per_step!r}")
        if max_plate_nesting is not None and not (
            is_int(max_plate_nesting) and max_plate_nesting >= 0
        ):
            raise ValueError(
                f"max_plate_nesting must be None or a non-negative int, got {max_plate_nesting!r}"
            )
        for name, value in (("step_size", step_size), ("target_accept", target_accept)):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise TypeError(f"{name} must be a number, got {type(value).__name__}")
        if not (math.isfinite(step_size) and step_size > 0):
            raise ValueError(f"step_size must be finite and positive, got {step_size!r}")
        if not 0 < target_accept < 1:
            raise ValueError(
                f"target_accept must lie strictly between 0 and 1, got {target_accept!r}"
            )
        if not (is_int(num_leapfrog) and num_leapfrog >= 1):
            raise ValueError(f"num_leapfrog must be a positive int, got {num_leapfrog!r}")
        if init is not None and not isinstance(init, dict):
            raise TypeError(
                f"init must be a dict of initial values keyed by site name, got "
                f"{type(init).__name__}"
            )
        if mask is not None and not isinstance(mask, (dict, torch.Tensor)):
            raise TypeError(
                f"mask must be a bool tensor (..., N, N) or a dict of them keyed by site name, "
                f"got {type(mask).__name__}"
            )
        self.model = model
        self.sites = sites
        self.num_chains = int(num_chains)
        self.proposals = proposals
        self.block_size = int(block_size)
        self.moves_per_step = int(moves_per_step)
        self.mask = mask
        self.init = dict(init or {})
        self.max_plate_nesting = None if max_plate_nesting is None else int(max_plate_nesting)
        self.step_size = float(step_size)
        self.num_leapfrog = int(num_leapfrog)
        self.adapt_step_size = bool(adapt_step_size)
        self.target_accept = float(target_accept)
        self.transforms = None
        self._user_params = None
        self._initial_params = None
        self._last_params = None

    # ----------------------------------------------------------------------------- set-up

    def setup(self, warmup_steps, *args, **kwargs):
        """Finds the sites, checks the masks and initial values, and draws the initial state.

        :param int warmup_steps: steps during which the step sizes adapt.
        :param args: the model's arguments.
        :param kwargs: the model's keyword arguments.
        """
        self._warmup_steps = int(warmup_steps)
        self._args, self._kwargs = args, kwargs
        self._t = 0
        self._stats = {}
        matrix_names = set(self.sites or ())
        probe = _Probe(matrix_names)
        with poutine.block():
            trace = poutine.trace(probe(self.model)).get_trace(*args, **kwargs)
        latent = probe.sites
        names = self.sites
        if names is None:
            names = [n for n, fn in latent.items() if isinstance(fn.support, Permutation)]
            if not names:
                raise ValueError(
                    "the model has no latent site with support permutation; name the sites "
                    "to sample as permutations in sites= (e.g. a FlatBirkhoff or GumbelSinkhorn "
                    "site, treated as a permutation matrix)"
                )
        for name in names:
            if name not in trace.nodes or trace.nodes[name]["type"] != "sample":
                raise ValueError(f"sites names {name!r}, which is not a sample site of the model")
            if name not in latent:
                raise ValueError(
                    f"sites names {name!r}, which is observed; only latent sites are sampled"
                )
        self._perm_sites = {}
        for name in names:
            fn = latent[name]
            event = tuple(fn.event_shape)
            if isinstance(fn.support, Permutation):
                kind = "perm"
            elif len(event) == 2 and event[0] == event[1] and not fn.support.is_discrete:
                kind = "matrix"
            else:
                raise ValueError(
                    f"site {name!r} ({type(fn).__name__}, support {fn.support}, event shape "
                    f"{event}) is not a permutation: PermutationKernel samples sites with "
                    f"support permutation (N,) and matrix sites (N, N) treated as permutations"
                )
            n = event[-1]
            batch = tuple(fn.batch_shape)
            dtype, device = _site_dtype_device(fn, name, kind, None, None)
            self._perm_sites[name] = {
                "kind": kind,
                "n": n,
                "batch": batch,
                "m": math.prod(batch),
                "dtype": dtype,
                "device": device,
                "fn": fn,
            }
        self._device = next(iter(self._perm_sites.values()))["device"]
        if "block" in self.proposals:
            for name, info in self._perm_sites.items():
                if self.block_size > info["n"]:
                    raise ValueError(
                        f"block_size={self.block_size} is larger than the N = {info['n']} items "
                        f"of site {name!r}; pass block_size <= {info['n']} (or use only "
                        f"proposals=('swap',))"
                    )
        self._continuous = {}
        for name, fn in latent.items():
            if name in self._perm_sites:
                continue
            if fn.support.is_discrete:
                raise ValueError(
                    f"site {name!r} ({type(fn).__name__}) is a discrete latent site that is not "
                    f"a permutation; PermutationKernel samples permutation and continuous sites "
                    f"only: marginalise it, condition on it, or name it in sites if it holds "
                    f"permutation matrices"
                )
            value = trace.nodes[name]["value"]
            self._continuous[name] = {
                "fn": fn,
                "shape": tuple(value.shape),
                "event_dim": len(fn.event_shape),
                "transform": biject_to(fn.support),
            }
        for name in self.init:
            if name not in latent:
                raise ValueError(f"init names {name!r}, which is not a latent site of the model")
        if self.max_plate_nesting is None:
            self._nesting = plate_nesting(trace)
        else:
            self._nesting = self.max_plate_nesting
        for name, info in self._perm_sites.items():
            if len(info["batch"]) > self._nesting:
                raise ValueError(
                    f"site {name!r} has batch shape {info['batch']} outside any pyro.plate; "
                    f"declare its batch dimensions with pyro.plate (or pass max_plate_nesting)"
                )
        self._allowed = {name: self._site_mask(name) for name in self._perm_sites}
        self.transforms = {name: _LongValues() for name in self._perm_sites}
        self._state = self._initial_state()
        self._log_p = self._log_density(self._state, self.num_chains)
        dead = (~torch.isfinite(self._log_p)).nonzero().flatten().tolist()
        if dead:
            raise ValueError(
                f"the initial state of chains {dead[:10]} has zero density (log p = "
                f"{float(self._log_p[dead[0]])}); pass init= values of nonzero density, or a "
                f"mask= of the pairs the model forbids, so that chains start where it is positive"
            )
        if self._continuous:
            self._eps = torch.full((self.num_chains,), self.step_size, dtype=torch.float64)
        self._initial_params = self._params(self._state)
        self._last_params = self._initial_params

    def _site_mask(self, name):
        """The allowed pairs ``(m, N, N)`` of site ``name``'s ``m`` permutations, or None."""
        info = self._perm_sites[name]
        n, batch = info["n"], info["batch"]
        given = self.mask.get(name) if isinstance(self.mask, dict) else self.mask
        if isinstance(self.mask, dict):
            unknown = set(self.mask) - set(self._perm_sites)
            if unknown:
                raise ValueError(
                    f"mask names {sorted(unknown)}, which are not permutation sites of the "
                    f"kernel ({sorted(self._perm_sites)})"
                )
        elif self.mask is not None and len(self._perm_sites) > 1:
            raise ValueError(
                "the kernel samples several permutation sites; pass mask as a dict keyed by "
                "site name"
            )
        masks = []
        if given is not None:
            arg = f"mask[{name!r}]" if isinstance(self.mask, dict) else "mask"
            if not isinstance(given, torch.Tensor) or given.dtype != torch.bool:
                raise ValueError(
                    f"{arg} must be a bool tensor (..., N, N), True where a row may take a "
                    f"column, got {getattr(given, 'dtype', type(given).__name__)}"
                )
            if given.dim() < 2 or tuple(given.shape[-2:]) != (n, n):
                raise ValueError(
                    f"{arg} must have shape (..., {n}, {n}) for site {name!r} of N = {n} items, "
                    f"got {tuple(given.shape)}"
                )
            masks.append(given)
        for d in _wrapped(info["fn"]):
            log_alpha = getattr(d, "log_alpha", None)
            if isinstance(log_alpha, torch.Tensor) and torch.isneginf(log_alpha).any():
                masks.append(~torch.isneginf(log_alpha.detach()))
                break
        if not masks:
            return None
        allowed = masks[0]
        for other in masks[1:]:
            allowed = allowed.to(other.device) & other
        try:
            allowed = allowed.to(info["device"]).expand(batch + (n, n))
        except RuntimeError:
            raise ValueError(
                f"the mask of site {name!r} has shape {tuple(allowed.shape)}, which does not "
                f"broadcast to the site's batch shape {batch} + (N, N) = {batch + (n, n)}"
            ) from None
        allowed = allowed.reshape(info["m"], n, n)
        scores = torch.zeros(allowed.shape, dtype=torch.float64).masked_fill(
            ~allowed.cpu(), -math.inf
        )
        try:
            matching(scores)
        except ValueError:
            raise ValueError(
                f"the allowed pairs of site {name!r} admit no permutation: some rows cannot all "
                f"be assigned distinct allowed columns; check the mask (and any -inf in the "
                f"site's log_alpha)"
            ) from None
        return allowed

    def _initial_state(self):
        c = self.num_chains
        state = {}
        user = dict(self.init)
        if self._user_params:
            user.update(self._user_params)
        for name, info in self._perm_sites.items():
            state[name] = self._initial_perms(name, info, user.get(name))
        # Continuous sites: a user's value, else a draw from the prior given the permutations.
        draws = {}
        missing = [name for name in self._continuous if name not in user]
        if missing:
            fixed = {name: self._model_value(name, state[name], c) for name in self._perm_sites}
            probe = _Probe(set())
            with poutine.block(), pyro.plate(_CHAIN_PLATE, c, dim=-(self._nesting + 1)):
                trace = poutine.trace(probe(poutine.condition(self.model, data=fixed))).get_trace(
                    *self._args, **self._kwargs
                )
            draws = {name: trace.nodes[name]["value"].detach() for name in missing}
        for name, info in self._continuous.items():
            value = user[name] if name in user else draws[name]
            state[name] = self._chain_value(name, info, value)
        return state

    def _chain_value(self, name, info, value):
        """A continuous site's value ``(C, 1.., batch, event)`` from one value for all chains
        (the site's shape) or one per chain (``C`` leading)."""
        arg = f"init[{name!r}]"
        if not isinstance(value, torch.Tensor):
            raise ValueError(f"{arg} must be a tensor, got {type(value).__name__}")
        c, shape = self.num_chains, info["shape"]
        try:
            if value.dim() > len(shape):
                value = value.reshape((-1,) + shape).expand((c,) + shape)
            else:
                value = value.expand(shape).unsqueeze(0).expand((c,) + shape)
        except RuntimeError:
            raise ValueError(
                f"{arg} has shape {tuple(value.shape)}; site {name!r} has shape {shape} (or "
                f"pass one value per chain, ({c},) + {shape})"
            ) from None
        pad = self._nesting - (len(shape) - info["event_dim"])
        if not torch.isfinite(value).all():
            raise ValueError(f"{arg} is not finite; start every chain at a finite value")
        return value.reshape((c,) + (1,) * max(pad, 0) + shape).detach().clone()

    def _initial_perms(self, name, info, value):
        """The chains' initial permutations of a site, ``(C, m, N)``."""
        c, m, n = self.num_chains, info["m"], info["n"]
        allowed = self._allowed[name]
        device = info["device"]
        if value is None:
            noise = torch.rand(c, m, n, n, dtype=torch.float64)
            if allowed is not None:
                noise = noise.masked_fill(~allowed.cpu(), -math.inf)
            return matching(noise).to(device)
        arg = f"init[{name!r}]"
        if not isinstance(value, torch.Tensor):
            raise ValueError(f"{arg} must be a tensor, got {type(value).__name__}")
        if value.dtype.is_floating_point:
            if value.dim() < 2 or tuple(value.shape[-2:]) != (n, n):
                raise ValueError(
                    f"{arg} holds scores, which must have shape (..., {n}, {n}); got "
                    f"{tuple(value.shape)}"
                )
            scores = value.detach().to("cpu", torch.float64)
            if allowed is not None:
                scores = scores.masked_fill(
                    ~allowed.cpu().reshape(info["batch"] + (n, n)), -math.inf
                )
            value = matching(scores)
        check_perm(value, arg)
        if value.shape[-1] != n:
            raise ValueError(
                f"{arg} holds permutations of {value.shape[-1]} items; site {name!r} has N = {n}"
            )
        value = value.to(device).long()
        try:
            if value.dim() == 1 + len(info["batch"]) or value.dim() == 1:
                value = value.expand(info["batch"] + (n,)).reshape(1, m, n)
            else:
                value = value.reshape(value.shape[0], m, n)
            value = value.expand(c, m, n).clone()
        except RuntimeError:
            raise ValueError(
                f"{arg} has shape {tuple(value.shape)}; site {name!r} needs (N,), its batch "
                f"shape + (N,) = {info['batch'] + (n,)}, or one per chain "
                f"({c},) + {info['batch'] + (n,)}"
            ) from None
        if allowed is not None:
            ok = allowed.expand(c, m, n, n).gather(-1, value.unsqueeze(-1)).all()
            if not ok:
                raise ValueError(
                    f"{arg} assigns a row to a forbidden column (mask or -inf log_alpha); "
                    f"start from a permutation within the allowed pairs"
                )
        return value

    @property
    def initial_params(self):
        """The chains' initial state (after :meth:`setup`): permutations ``(C, ..., N)`` and
        continuous values ``(C, ...)`` keyed by site name (no chain dimension when
        ``num_chains=1``)."""
        return self._initial_params

    @initial_params.setter
    def initial_params(self, params):
        self._user_params = dict(params)

    # ------------------------------------------------------------------- the joint density

    def _model_value(self, name, perms, batch):
        """A permutation site's value for the model: ``(B, 1.., batch, N)`` long or the
        matrices ``(B, 1.., batch, N, N)``."""
        info = self._perm_sites[name]
        shape = (
            (batch,) + (1,) * (self._nesting - len(info["batch"])) + info["batch"] + (info["n"],)
        )
        value = perms.reshape(shape)
        if info["kind"] == "matrix":  # perm_to_matrix, without validating the chains' states
            value = torch.zeros(
                shape + (info["n"],), dtype=info["dtype"], device=value.device
            ).scatter_(-1, value.unsqueeze(-1), 1)
        return value

    def _log_density(self, state, batch):
        """``log p(state, data)`` of ``batch`` states, ``(batch,)`` float64; the state holds
        permutations ``(batch, m, N)`` and continuous values ``(batch, 1.., shape)``."""
        values = {name: self._model_value(name, state[name], batch) for name in self._perm_sites}
        values.update({name: state[name] for name in self._continuous})
        skipped = {n for n, i in self._perm_sites.items() if i["kind"] == "matrix"}
        try:
            return batched_log_joint(
                self.model,
                values,
                batch,
                self._nesting,
                _CHAIN_PLATE,
                self._args,
                self._kwargs,
                skipped,
                self._device,
            )
        except LatentSite as e:
            raise ValueError(
                f"site {e.name!r} appeared in a later run of the model but not in the first; "
                f"PermutationKernel needs the same latent sites in every run"
            ) from None
        except ExtraDims as e:
            raise ValueError(
                f"site {e.name!r} has batch dimensions outside any pyro.plate (log_prob shape "
                f"{e.shape}); declare them with pyro.plate or pass max_plate_nesting"
            ) from None

    # ------------------------------------------------------------------------------ moves

    def _count(self, key, tried, succeeded):
        """Adds to the move counts (``succeeded`` a tensor, summed without a host sync)."""
        t, s = self._stats.get(key, (0, 0))
        self._stats[key] = (t + tried, s + succeeded)

    def _repeat(self, state, times, skip=None):
        """Every entry of ``state`` repeated ``times`` times along the chain dimension."""
        return {
            name: value if name == skip else value.repeat_interleave(times, dim=0)
            for name, value in state.items()
        }

    def _swap(self, name, k):
        """One swap move on permutation ``k`` of site ``name`` for every chain."""
        perms = self._state[name]
        c = perms.shape[0]
        allowed = None if self._allowed[name] is None else self._allowed[name][k]
        perm = perms[:, k]
        new, log_q, moved = _propose_swap(perm, allowed)
        proposal = dict(self._state)
        proposal[name] = perms.clone()
        proposal[name][:, k] = new
        with torch.no_grad():
            log_p = self._log_density(proposal, c)
        log_ratio = log_p - self._log_p + log_q.to(log_p)
        u = torch.rand(c, dtype=torch.float64, device=log_ratio.device)
        accept = moved.to(log_ratio.device) & (u.log() < log_ratio) & ~torch.isnan(log_p)
        self._state[name] = torch.where(
            accept[:, None, None].to(perm.device), proposal[name], perms
        )
        self._log_p = torch.where(accept, log_p, self._log_p)
        self._count("swap", c, accept.sum())

    def _block(self, name, k):
        """One block-Gibbs move on permutation ``k`` of site ``name`` for every chain."""
        perms = self._state[name]
        c, _, n = perms.shape
        size = self.block_size
        dev = perms.device
        arrangements = all_permutations(size, device=dev)  # (A, size)
        a = arrangements.shape[0]
        rows = torch.rand(c, n, device=dev).argsort(-1)[:, :size]  # (C, size)
        perm = perms[:, k]
        cols = perm.gather(-1, rows)  # (C, size)
        new_cols = cols[:, arrangements]  # (C, A, size)
        candidates = perm[:, None, :].expand(c, a, n).clone()
        candidates.scatter_(-1, rows[:, None, :].expand(c, a, size), new_cols)
        state = self._repeat(self._state, a, skip=name)
        full = perms.repeat_interleave(a, dim=0)
        full[:, k] = candidates.reshape(c * a, n)
        state[name] = full
        with torch.no_grad():
            log_p = self._log_density(state, c * a).reshape(c, a)
        allowed = self._allowed[name]
        if allowed is not None:
            ok = allowed[k][rows[:, None, :].expand(c, a, size), new_cols].all(-1)
            log_p = log_p.masked_fill(~ok.to(log_p.device), -math.inf)
        log_p = torch.nan_to_num(log_p, nan=-math.inf)
        # the current arrangement is the identity (first of all_permutations), always allowed
        pick = torch.distributions.Categorical(logits=log_p).sample()
        arange = torch.arange(c, device=log_p.device)
        self._state[name] = full.reshape(c, a, -1, n)[arange.to(dev), pick.to(dev)]
        self._log_p = log_p[arange, pick]
        self._count("block", c, (pick != 0).sum())

    def _potential(self, z):
        """The potential ``-log p(x(z)) - log|dx/dz|`` per chain at unconstrained values ``z``,
        its gradient, and the model's log joint ``log p(x(z))`` (without the Jacobian)."""
        c = self.num_chains
        z = {name: v.detach().requires_grad_() for name, v in z.items()}
        state = dict(self._state)
        log_det = 0.0
        for name, info in self._continuous.items():
            t = info["transform"]
            x = t(z[name])
            state[name] = x
            ld = torch.as_tensor(t.log_abs_det_jacobian(z[name], x))
            ld = ld.reshape(ld.shape[0] if ld.dim() else 1, -1).sum(-1).expand(c)
            log_det = log_det + ld.to(torch.float64)
        log_model = self._log_density(state, c)
        log_target = log_model + torch.as_tensor(log_det).to(log_model.device)
        total = torch.where(torch.isfinite(log_target), log_target, 0.0).sum()
        if total.requires_grad:
            grads = torch.autograd.grad(total, list(z.values()), allow_unused=True)
        else:
            grads = [None] * len(z)
        grads = {
            name: torch.zeros_like(z[name]) if g is None else -g.detach()
            for name, g in zip(z, grads)
        }
        return -log_target.detach(), grads, log_model.detach()

    def _hmc(self):
        """One HMC transition of all continuous sites, per chain."""
        c = self.num_chains
        z0 = {
            name: info["transform"].inv(self._state[name]).detach()
            for name, info in self._continuous.items()
        }
        u0, g0, _ = self._potential(z0)
        r0 = {name: torch.randn_like(v) for name, v in z0.items()}

        def per_chain(eps, like):
            return eps.to(like).reshape((c,) + (1,) * (like.dim() - 1))

        def kinetic(r):
            return sum(v.reshape(c, -1).pow(2).sum(-1).to(torch.float64) for v in r.values()) / 2

        eps = self._eps
        z = dict(z0)
        r = {n: v - per_chain(eps / 2, v) * g0[n] for n, v in r0.items()}
        u, g, log_p = u0, g0, None
        for step in range(self.num_leapfrog):
            z = {n: v + per_chain(eps, v) * r[n] for n, v in z.items()}
            u, g, log_p = self._potential(z)
            half = step == self.num_leapfrog - 1
            r = {n: v - per_chain(eps / (2 if half else 1), v) * g[n] for n, v in r.items()}
        h0 = u0 + kinetic(r0)
        h1 = u.to(h0) + kinetic(r)
        log_accept = (h0 - h1).nan_to_num(nan=-math.inf)
        accept_prob = log_accept.clamp(max=0).exp()
        accept = torch.rand(c, dtype=torch.float64).log().to(log_accept) < log_accept
        for name, info in self._continuous.items():
            x = info["transform"](z[name]).detach()
            keep = per_chain(accept, x).bool()
            self._state[name] = torch.where(keep, x, self._state[name])
        self._log_p = torch.where(accept.to(self._log_p.device), log_p.to(self._log_p), self._log_p)
        self._count("hmc", c, accept.sum())
        if self.adapt_step_size and self._t < self._warmup_steps:
            # Robbins-Monro on log step size, towards target_accept.
            rate = (self._t + 1) ** -0.6
            log_eps = self._eps.log() + rate * (accept_prob.cpu() - self.target_accept)
            self._eps = log_eps.clamp(-20, 5).exp()

    def sample(self, params):
        """One step of every chain: the permutation moves, then the HMC transition.

        :param dict params: the current state (as returned by the previous call).
        :returns: the new state, a dict keyed by site name.
        """
        if params is not self._last_params:
            self._state = self._state_from_params(params)
            with torch.no_grad():
                self._log_p = self._log_density(self._state, self.num_chains)
        for name, info in self._perm_sites.items():
            for k in range(info["m"]):
                for _ in range(self.moves_per_step):
                    for proposal in self.proposals:
                        if proposal == "swap":
                            self._swap(name, k)
                        else:
                            self._block(name, k)
        if self._continuous:
            self._hmc()
        self._t += 1
        self._last_params = self._params(self._state)
        return self._last_params

    # ------------------------------------------------------------------- state <-> params

    def _params(self, state):
        out = {}
        for name, info in self._perm_sites.items():
            shape = info["batch"] + (info["n"],)
            out[name] = state[name].reshape((self.num_chains,) + shape)
        for name, info in self._continuous.items():
            out[name] = state[name].reshape((self.num_chains,) + info["shape"])
        if self.num_chains == 1:
            out = {name: value[0] for name, value in out.items()}
        return out

    def _state_from_params(self, params):
        state = {}
        for name, info in self._perm_sites.items():
            state[name] = params[name].long().reshape(self.num_chains, info["m"], info["n"])
        for name, info in self._continuous.items():
            state[name] = self._chain_value(
                name, info, params[name].reshape((self.num_chains,) + info["shape"])
            )
        return state

    # ------------------------------------------------------------------------ diagnostics

    def _rates(self):
        labels = {"swap": "swap acceptance", "block": "block move rate", "hmc": "hmc acceptance"}
        out = {}
        for key, (tried, succeeded) in self._stats.items():
            out[labels[key]] = float(succeeded) / tried if tried else float("nan")
        if self._continuous:
            out["step size"] = float(self._eps.mean())
        return out

    def logging(self):
        """The acceptance rates so far, for Pyro's progress bar."""
        return {key: f"{value:.3g}" for key, value in self._rates().items()}

    def diagnostics(self):
        """The acceptance rates over the whole run (swap acceptance, block move rate, HMC
        acceptance, mean HMC step size)."""
        return self._rates()
