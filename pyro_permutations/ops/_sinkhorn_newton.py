"""Solving the Sinkhorn problem to a tolerance: Newton's method with temperature scaling.

The Sinkhorn limit ``S(Y) = diag(e^f) e^Y diag(e^g)`` maximises the concave dual

.. math::

    \\phi(f) = \\sum_i f_i + \\sum_j g_j(f), \\qquad
    g_j(f) = -\\log \\sum_i e^{Y_{ij} + f_i},

whose gradient is ``1 - r`` (``r`` the row sums of ``P = diag(e^f) e^Y diag(e^g)``, whose
columns sum to one by the choice of ``g``) and whose negative Hessian is
``H = diag(r) - P P^T`` (positive semi-definite, null vector ``1``). Plain Sinkhorn is a
diagonal approximation of Newton's step ``d = H^{-1} (1 - r)``; the plain loop needs about
900-1,400 sweeps at temperature 0.1 and does not finish at 0.01. Newton with an Armijo
line search converges quadratically: about 7-12 steps at temperature 0.1, each costing one
``(N, N)`` batched solve [Brauer et al. 2017]. From ``N = 256`` on the system is not formed:
conjugate gradients with ``O(N^2)`` products solve it inexactly (a truncated Newton method),
which avoids the ``O(N^3)`` product ``P P^T`` and factorisation (``python -m benchmarks``).

Temperature scaling (epsilon-scaling): when the scores span a large range (low temperature),
the problem is first solved for ``s Y`` with a small ``s`` and the solution is used as the start
for ``kappa s Y``, until ``s = 1``. The iterate is kept absorbed, ``Y <- log P``, so that
rescaling is a multiplication of ``log P`` by ``kappa`` (the potentials scale with it), and
so that late, small corrections are not lost to float32 rounding against large potentials.

If the Newton system is numerically singular, or the line search fails, the step falls back
to the Sinkhorn row normalisation ``d = -log r``, which never increases ``phi``'s gap.

The line search starts inside a trust region (``STEP_CAP``: the step changes the row
potentials by a range of at most 5), and evaluates ``phi`` by a product with ``P`` rather than
an exponential of every entry (:func:`_trial_lse`), for ``LINE_TRIALS`` step lengths
``t, t/2, ...`` and the plain step at once (one ``(B, K, N) x (B, N, N)`` product).

**Host synchronisation.** The loop reads tensors on the host only at its checks (one copy of a
few flags per element, every ``CHECK_EVERY`` iterations, every one on the CPU); everything
else is decided on the device, per element, by ``torch.where`` (see :func:`newton_solve`), so
that on a GPU the host never waits for the device between checks.

Nothing is computed in subnormal numbers, which are 20 to 50 times slower on CPUs (see
:func:`_tiny_limits`).

Easy problems (high temperature) need only a few plain sweeps, which cost no solve: every
element starts with plain Sinkhorn sweeps and switches to Newton for good as soon as a sweep
fails to halve its marginal error.

References:

**Other marginals.** :func:`newton_solve` also takes row and column marginals ``a``, ``b``
(positive, ``sum a = sum b``), for the rectangular and unmatched ("dustbin") problems: then
``P 1 = a`` and ``P^T 1 = b``, the dual is ``phi(f) = <a, f> + <b, g(f)>`` with
``g_j = log b_j - log sum_i e^{Y_ij + f_i}``, its gradient ``a - r`` and its negative Hessian
``diag(r) - P diag(1/b) P^T`` (null vector ``1`` again), the plain step ``d = log(a / r)``,
and the marginal error is relative, ``max_i |r_i / a_i - 1|``. Without them (``None``) the
code is the unit-marginal one above, operation for operation.

Brauer, Clason, Lorenz, Wirth. A Sinkhorn-Newton method for entropic optimal transport.
arXiv:1710.06635, 2017. Schmitzer. Stabilized sparse scaling algorithms for entropy regularized
transport problems. SIAM J. Sci. Comput. 2019 (epsilon-scaling and absorption).
"""

import math

import torch

from pyro_permutations.ops._spd_solve import RIDGES, batched_pcg, spd_solve

#: Scores are first scaled so that their range within one matrix is at most this.
START_SPREAD = 32.0
#: Factor by which the scale grows between stages.
KAPPA = 4.0
#: Marginal error at which an intermediate stage is considered solved.
STAGE_TOL = 0.1
#: Step lengths ``t, t / 2, ..., t / 2^(LINE_TRIALS - 1)`` tried at once by the line search
#: before falling back to a Sinkhorn step.
LINE_TRIALS = 6
#: Armijo constant.
ARMIJO = 1e-4
#: From this size on, Newton systems are solved by conjugate gradients, not formed.
CG_MIN_N = 256
#: Largest relative residual accepted from conjugate gradients.
CG_FORCING = 0.1
#: Most conjugate-gradient products per Newton step.
CG_MAX_ITER = 200
#: Conjugate-gradient products of the first Newton steps, and the fewest ever run.
CG_MIN_BUDGET = 4
#: The loop reads its flags on the host (its only synchronisation) every this many
#: iterations; on the CPU, where a read costs nothing and an iteration a lot, every one.
CHECK_EVERY = 4
CHECK_EVERY_CPU = 1
#: A plain sweep must shrink the marginal error by this factor to be preferred to Newton.
PLAIN_RATE = 0.5
#: A trust region: the line search starts from the step ``t d`` whose range
#: ``t (max d - min d)`` is at most this. Longer Newton steps overshoot after a temperature
#: stage; with this cap the solver takes 10-40% fewer steps at temperatures 0.1 to 0.001
#: (measured at the benchmark's four sizes, three seeds each).
STEP_CAP = 5.0
# Tiny numbers. On CPUs an exponential or a product whose result falls below ``tiny`` (the
# smallest normal number, ``2^-126`` in float32) takes a slow path, 20-50 times slower than the
# normal one; at low temperature most entries of ``P`` are that small. No entry below
# ``tiny^(3/4)`` (``2.7e-29`` in float32) can change a marginal, so exponentials are taken of
# arguments clamped at ``log tiny^(3/4)`` and such entries are flushed to zero; products are
# kept above ``tiny`` by the two rules of :func:`_tiny_limits`.


def _tiny_limits(dtype):
    """``(floor, spread)`` for ``dtype``: entries of ``P`` below ``floor = tiny^(3/4)`` are
    flushed to zero, and a weight vector spans at most ``spread = -log(tiny) / 4`` in log space
    (21.8 in float32), so that every product of an entry and a weight is a normal number."""
    tiny = torch.finfo(dtype).tiny
    return tiny**0.75, -0.25 * math.log(tiny)


def _exp_flushed(y):
    """``exp(y)`` with entries below ``tiny^(3/4)`` set to zero, computed without subnormals."""
    floor, _ = _tiny_limits(y.dtype)
    # In place: one allocation fewer (touching fresh pages was a large, erratic cost here).
    p = y.clamp(min=math.log(floor)).exp_()
    if p.requires_grad:  # grad="unrolled": out of place
        return torch.nn.functional.threshold(p, 2 * floor, 0.0)
    return torch.nn.functional.threshold_(p, 2 * floor, 0.0)


def _col_logsumexp(y):
    """``logsumexp`` over dim ``-2`` of ``y`` (no column entirely ``-inf``), without
    subnormals: terms below ``tiny^(3/4)`` times the column's largest are dropped, which changes
    the result by a fraction below ``N tiny^(3/4)``."""
    floor, _ = _tiny_limits(y.dtype)
    m = y.amax(-2, keepdim=True)
    return m + (y - m).clamp_(min=math.log(floor)).exp_().sum(-2, keepdim=True).log_()


def _normalize_cols(y, log_b=None):
    """``y`` with its columns normalised to sum to one, or to ``exp(log_b)`` ``(B, M)``."""
    y = y - _col_logsumexp(y)
    return y if log_b is None else y + log_b.unsqueeze(-2)


def _col_lse(y, p, f):
    """Column log-normaliser of ``y + f[:, :, None]``, given ``p = exp(y)`` (flushed).

    ``logsumexp_i (y_ij + f_i) = m + log sum_i p_ij e^{f_i - m}`` with ``m = max f``: a
    matrix-vector product with the ``p`` at hand instead of an exponential of every entry.
    ``y``'s columns are normalised, so each sum is at least ``e^{min f - m}``. Where
    ``max f - min f`` is within ``spread`` (:func:`_tiny_limits`), the entries flushed in
    ``p`` change a sum by a fraction at most ``2 N tiny^(3/4) e^spread = 2 N tiny^(1/2)``
    (``2e-19 N`` in float32), far below rounding, and no product is subnormal. Elements with a
    wider ``f`` take the exact column ``logsumexp``.
    """
    hi, lo = f.amax(-1, keepdim=True), f.amin(-1, keepdim=True)
    w = torch.exp(f - hi).unsqueeze(-2)
    lse = hi + torch.log(torch.bmm(w, p).squeeze(-2))
    wide = (hi - lo).squeeze(-1) > _tiny_limits(f.dtype)[1]
    if wide.any():
        exact = _col_logsumexp(y[wide] + f[wide].unsqueeze(-1)).squeeze(-2)
        lse = lse.index_put((wide.nonzero().squeeze(-1),), exact)
    return lse


def _half_spread(y):
    """Half the range of each matrix's finite entries, ``max / 2 - min / 2``, shape ``(B,)``.

    Halved because the range itself overflows to ``inf`` once entries pass half the largest
    float (``+-1e308`` in float64), which would make the starting scale zero.
    """
    finite = torch.isfinite(y)
    hi = torch.where(finite, y, -torch.inf).amax(dim=(-2, -1))
    lo = torch.where(finite, y, torch.inf).amin(dim=(-2, -1))
    return hi / 2 - lo / 2


def _newton_direction(p, r, a=None, b=None, ridge=None, cg_iters=CG_MAX_ITER):
    """``d`` solving ``(diag(r) - P P^T + 1 1^T / N + delta I) d = 1 - r``, per element.

    With marginals ``a`` ``(B, N)`` and ``b`` ``(B, M)`` the system is
    ``(diag(r) - P diag(1/b) P^T + 1 1^T / N + delta I) d = a - r``.

    ``p`` is flushed (:func:`_exp_flushed`); for the products ``P P^T`` entries below
    ``sqrt(tiny)`` are flushed too (they change ``H`` by less than ``N sqrt(tiny)``).

    Up to ``CG_MIN_N`` the system is formed and solved directly (batched Cholesky, with the
    extra ridge ``RIDGES[ridge]`` per element, see :func:`spd_solve`); above it, where forming
    ``P P^T`` and factorising cost ``O(N^3)``, it is solved inexactly by ``cg_iters`` steps of
    conjugate gradients with ``O(N^2)`` products (:func:`_cg`).

    Returns ``(d, ok, used)``: ``ok`` is False where ``d`` is not a finite ascent direction
    (the caller takes the plain step there), ``used`` the conjugate-gradient products each
    element needed (``None`` for the direct solve). Nothing here reads a tensor on the host.
    """
    n = p.shape[-2]
    grad = 1 - r if a is None else a - r
    p = torch.nn.functional.threshold(p, torch.finfo(p.dtype).tiny ** 0.5, 0.0)
    if n >= CG_MIN_N:
        d, used, _ = _cg(p, r, grad, b, cg_iters)
        ok = torch.isfinite(d).all(-1) & ((grad * d).sum(-1) > 0)
        return d, ok, used
    eps = torch.finfo(p.dtype).eps
    pb = p if b is None else p / b.unsqueeze(-2)
    h = torch.bmm(pb, p.transpose(-1, -2)).neg_().add_(1.0 / n)
    h.diagonal(dim1=-2, dim2=-1).add_(r + 100 * eps)
    d, ok = spd_solve(h, grad, ridge=ridge)
    ok = ok & ((grad * d).sum(-1) > 0)
    return d, ok, None


def _cg(p, r, grad, b, iters):
    """Inexact Newton direction by ``iters`` steps of Jacobi-preconditioned conjugate gradients.

    The products ``H v = r * v - P (P^T v) + mean(v) + delta v`` (``P diag(1/b) P^T v`` with
    column marginals ``b``) cost ``O(N^2)`` each. An element stops (its step lengths set to
    zero) once its residual is below ``min(CG_FORCING, sqrt(|g|_inf)) |g|`` (an inexact Newton
    method: loose early, tight near the solution). The number of steps is fixed by the caller,
    so that no flag is read on the host inside the loop.

    Returns ``(x, used, unfinished)``: the direction, the products each element needed (at
    most ``iters``) and whether it stopped short of its residual target.
    """
    n = p.shape[-2]
    delta = 100 * torch.finfo(p.dtype).eps
    pt = p.transpose(-1, -2)
    inv_b = None if b is None else (1 / b).unsqueeze(-1)

    def matvec(v):
        ptv = pt @ v.unsqueeze(-1)
        pv = (p @ (ptv if inv_b is None else ptv * inv_b)).squeeze(-1)
        return r * v - pv + v.mean(-1, keepdim=True) + delta * v

    pp = (p * p).sum(-1) if b is None else (p * p / b.unsqueeze(-2)).sum(-1)
    diag = (r - pp + 1.0 / n + delta).clamp(min=delta)
    gnorm = grad.norm(dim=-1)
    forcing = torch.clamp(grad.abs().amax(-1).sqrt(), max=CG_FORCING)
    target = forcing * gnorm
    return batched_pcg(matvec, grad, diag, target, iters)


def _newton_cg(p, r, grad, b=None, iters=CG_MAX_ITER):
    """The conjugate-gradient direction of :func:`_cg` alone (``iters`` steps at most)."""
    return _cg(p, r, grad, b, iters)[0]


def _trial_lse(p, f):
    """Column log-normalisers ``logsumexp_i (y_ij + f_ti)`` of ``T`` shifts ``f`` ``(B, T, N)``
    at once, given ``p = exp(y)`` (flushed, columns normalised): one batched product
    ``(B, T, N) x (B, N, M)``, as in :func:`_col_lse`. Every shift must span at most
    ``spread`` (:func:`_tiny_limits`); the callers keep them so (the trust region of the line
    search, the window of :func:`_plain_step`), which is why no element needs the exact path
    (and no flag is read on the host)."""
    hi = f.amax(-1, keepdim=True)
    w = torch.exp(f - hi)
    return hi + torch.log(torch.bmm(w, p))


def _plain_step(u):
    """The plain Sinkhorn row step ``d = -log u`` (``u = r / a``), kept within a window.

    Where ``d`` spans more than ``spread`` (:func:`_tiny_limits`; early, far from the
    solution) it is clamped to the window ``[l, l + spread]``,
    ``l = min(max(min d, max d - spread), 0)``, which holds 0 (``sum r = sum a``, so ``d`` has
    both signs). Each row's part of the dual, ``a_i d_i - r_i e^{d_i}``, is concave with its
    maximum at ``d_i``, so moving it from 0 towards ``d_i`` only part of the way still
    increases the dual: the clamped step is a damped Sinkhorn step, and the undamped one once
    ``d`` is narrow, which is always, near the solution.
    """
    d = -torch.log(u)
    spread = _tiny_limits(u.dtype)[1] * (1 - 1e-3)
    hi, lo = d.amax(-1, keepdim=True), d.amin(-1, keepdim=True)
    low = torch.maximum(lo, hi - spread).clamp(max=0.0)
    return torch.minimum(torch.maximum(d, low), low + spread)


def _line_search(p, d, slope, plain, a=None, log_b=None):
    """The largest of ``t_k = t_0 2^-k``, ``k < LINE_TRIALS``, with
    ``phi(t_k d) >= ARMIJO t_k slope`` (``phi(0) = 0`` here), all tried in one product.

    ``p = exp(y)`` (subnormals flushed) gives each trial's normaliser by :func:`_trial_lse`,
    together with that of the plain step ``plain`` (the fallback, one more row of the same
    product). With marginals, ``phi(f) = <a, f> - <b, lse(f) - log b>`` (``y``'s columns sum
    to ``b``). ``t_0`` keeps the step within the trust region ``STEP_CAP``.

    Returns ``(t, accepted, lse, lse_plain)``: ``lse`` is the column log-normaliser of
    ``y + t d`` at the accepted ``t`` (so the step needs no second normalisation), and
    ``lse_plain`` that of ``y + plain``.

    ``phi`` is a sum of ``2 N`` terms of order one, so the test allows for their rounding.
    """
    batch, n, m = p.shape
    eps = torch.finfo(p.dtype).eps
    if a is None:
        noise = 4 * n * eps
    else:  # 2 N terms of order one, or a few large ones: scale with the total mass
        b = log_b.exp()
        noise = (4 * (a.sum(-1) + n + m) * eps)[:, None]
    limit = min(_tiny_limits(p.dtype)[1], STEP_CAP)
    width = (d.amax(-1) - d.amin(-1)).detach()
    t0 = torch.clamp(limit / width.clamp(min=1e-30), max=1.0)
    halvings = torch.tensor([0.5**k for k in range(LINE_TRIALS)], dtype=p.dtype, device=p.device)
    t = t0[:, None] * halvings  # (B, K)
    f = t[:, :, None] * d[:, None, :]
    lse_all = _trial_lse(p, torch.cat([f, plain[:, None, :]], dim=1))
    lse_t = lse_all[:, :LINE_TRIALS]
    if a is None:
        phi = f.sum(-1) - lse_t.sum(-1)
    else:
        phi = (a[:, None, :] * f).sum(-1) - (b[:, None, :] * (lse_t - log_b[:, None, :])).sum(-1)
    good = phi >= ARMIJO * t * slope[:, None] - noise
    first = good.to(torch.int8).argmax(-1, keepdim=True)  # the first (largest) accepted
    t_acc = t.gather(1, first).squeeze(1)
    lse = lse_t.gather(1, first[:, :, None].expand(batch, 1, m)).squeeze(1)
    return t_acc, good.any(-1), lse, lse_all[:, LINE_TRIALS]


def _check_every(device):
    return CHECK_EVERY_CPU if device.type == "cpu" else CHECK_EVERY


def newton_solve(y, tol, max_iter, log_a=None, log_b=None):
    """Solve ``S(y)`` for ``y`` of shape ``(B, N, N)`` to marginal error ``tol``.

    With ``log_a`` ``(B, N)`` and ``log_b`` ``(B, M)`` (both or neither), ``y`` may be
    ``(B, N, M)`` and the rows and columns of the solution sum to ``exp(log_a)`` and
    ``exp(log_b)`` (which must have equal totals); ``error`` is then the relative row error
    ``max_i |r_i / a_i - 1|``.

    Returns ``(log_p, iterations, sweeps, newton_steps, error, final)``: ``log_p`` of shape
    ``(B, N, N)`` with columns normalised exactly and rows to within ``error``; ``iterations``
    counts every pass of the loop, which is a plain sweep, a Newton step (counted as one even
    where its line search failed and the plain step was taken instead: its system was solved)
    or a stage change (a rescaling, no step), and ``sweeps`` and ``newton_steps`` count the
    first two kinds; ``final`` is False for an element stopped by ``max_iter`` before its last
    temperature stage, whose ``log_p`` solves the scaled-down problem ``S(s y)``, ``s < 1``,
    not ``S(y)`` (however small its ``error``).

    Each stage multiplies the scale by at most ``KAPPA``, so scores spanning ``R`` take about
    ``log_4(R / START_SPREAD)`` stages: 5 for ``R = 2e4``, 62 at float32's largest, 510 at
    float64's.

    **Host synchronisation.** The loop reads tensors on the host only at its checks, every
    ``CHECK_EVERY`` iterations (``CHECK_EVERY_CPU`` on the CPU, where a read costs nothing),
    each one copy of a few flags per element: which elements are done, which take Newton
    steps, which have solved their temperature stage, and the conjugate-gradient products the
    last steps needed. Between checks every decision is a ``torch.where`` on the device:
    an element that meets ``tol`` is frozen (its ``log P`` no longer changes, its counts stop)
    and is removed at the next check; while some element is on a scaled-down stage, every
    iteration also forms the rescaled matrix (an exponential per entry) for the elements whose
    stage is solved; the switch from plain sweeps to Newton steps waits for the next check
    (a few more plain sweeps); the line search tries its step lengths at once; the conjugate
    gradients run a number of steps fixed at the last check (1.5 times the most any element
    then needed, so that it adapts). Apart from the Newton switch, the counts and the result
    are those of a solver that checks every iteration.
    """
    batch = y.shape[0]
    device = y.device
    out = torch.empty_like(y)
    iterations = torch.zeros(batch, dtype=torch.long, device=device)
    sweeps = torch.zeros(batch, dtype=torch.long, device=device)
    newton_steps = torch.zeros(batch, dtype=torch.long, device=device)
    errors = torch.empty(batch, dtype=y.dtype, device=device)
    reached = torch.zeros(batch, dtype=torch.bool, device=device)

    # The schedule is a constant of the computation: no gradient flows through it.
    half_spread = _half_spread(y.detach()).clamp(min=1e-30)
    scale = (START_SPREAD / 2 / half_spread).clamp(max=1.0)
    a = None if log_a is None else log_a.exp()
    y = _normalize_cols(y * scale[:, None, None], log_b)
    # Per live element: its global index, its mode and counts, and (once done) its results.
    state = {
        "idx": torch.arange(batch, device=device),
        "newton": torch.zeros(batch, dtype=torch.bool, device=device),
        "prev_err": torch.full((batch,), torch.inf, dtype=y.dtype, device=device),
        "swept": torch.zeros(batch, dtype=torch.long, device=device),
        "solved": torch.zeros(batch, dtype=torch.long, device=device),
        "ridge": torch.zeros(batch, dtype=torch.long, device=device),
        "done": torch.zeros(batch, dtype=torch.bool, device=device),
        "done_it": torch.zeros(batch, dtype=torch.long, device=device),
        "done_err": torch.zeros(batch, dtype=y.dtype, device=device),
        "done_final": torch.zeros(batch, dtype=torch.bool, device=device),
    }
    every = _check_every(device)
    use_newton = False  # host: some live element takes Newton steps (as of the last check)
    staged = True  # host: some live element is on a scaled-down stage (as of the last check)
    cg_iters = CG_MIN_BUDGET
    cg_peak = torch.zeros((), dtype=torch.long, device=device)
    it = 0
    while True:
        p = _exp_flushed(y)
        r = p.sum(-1)
        u = r if a is None else r / a  # relative row sums
        err = (u - 1).abs().amax(-1)
        final = scale >= 1
        s = state
        live = ~s["done"]
        newly = live & (final & (err <= tol) | (it >= max_iter))
        s["done_it"] = torch.where(newly, it, s["done_it"])
        s["done_err"] = torch.where(newly, err, s["done_err"])
        s["done_final"] = torch.where(newly, final, s["done_final"])
        s["done"] = s["done"] | newly
        live = ~s["done"]
        s["newton"] = s["newton"] | (err > PLAIN_RATE * s["prev_err"])
        s["prev_err"] = err
        pending = live & ~final & (err <= STAGE_TOL)  # stage solved: rescale at a check
        check = it % every == 0 or it >= max_iter
        advancing = staged  # between checks: wherever some element is on a scaled-down stage
        if check:
            rows = [s["done"], s["newton"] & live, pending, ~final & live]
            flags = torch.stack(rows).to(torch.long)
            host = torch.cat([flags.flatten(), cg_peak.reshape(1)]).tolist()  # the one read
            k = len(host) // 4
            done_h, newton_h, pending_h = host[:k], host[k : 2 * k], host[2 * k : 3 * k]
            staged_h = host[3 * k : 4 * k]
            if any(done_h):
                fin = torch.tensor([i for i, x in enumerate(done_h) if x], device=device)
                g = s["idx"][fin]
                out[g] = y[fin]
                iterations[g] = s["done_it"][fin]
                sweeps[g] = s["swept"][fin]
                newton_steps[g] = s["solved"][fin]
                errors[g] = s["done_err"][fin]
                reached[g] = s["done_final"][fin]
                if all(done_h):
                    break
                keep_h = [i for i, x in enumerate(done_h) if not x]
                newton_h = [newton_h[i] for i in keep_h]
                pending_h = [pending_h[i] for i in keep_h]
                staged_h = [staged_h[i] for i in keep_h]
                keep = torch.tensor(keep_h, device=device)
                y, p, r, u, err, scale, final, pending = (
                    t[keep] for t in (y, p, r, u, err, scale, final, pending)
                )
                state = s = {key: t[keep] for key, t in s.items()}
                live = ~s["done"]
                if a is not None:
                    a, log_b = a[keep], log_b[keep]
            use_newton = any(newton_h)
            advancing = any(pending_h)
            staged = any(staged_h)
            if host[-1] > 0:  # twice the most products an element needed since the last check
                cg_iters = min(CG_MAX_ITER, max(CG_MIN_BUDGET, host[-1] + host[-1] // 2 + 1))
                cg_peak = torch.zeros_like(cg_peak)
        # A plain sweep, or a Newton step where sweeps have stalled; elements whose stage is
        # solved move to the next scale instead.
        stepping = live & ~pending if advancing else live
        d = _plain_step(u)
        if use_newton:
            newton = s["newton"] & stepping
            b = None if log_b is None else log_b.exp()
            d_newton, ok, used = _newton_direction(p, r, a, b, s["ridge"], cg_iters)
            if used is None:  # a failed factorisation: a larger ridge next time
                s["ridge"] = torch.where(
                    newton & ~ok, (s["ridge"] + 1).clamp(max=len(RIDGES) - 1), s["ridge"]
                )
            else:
                cg_peak = torch.maximum(cg_peak, torch.where(newton, used, 0).amax())
            grad = 1 - r if a is None else a - r
            slope = (grad * d_newton).sum(-1)
            t, accepted, lse_newton, lse = _line_search(p, d_newton, slope, d, a, log_b)
            # A failed line search takes the plain Sinkhorn step instead.
            use = newton & ok & accepted
            d = torch.where(use[:, None], t[:, None] * d_newton, d)
            lse = torch.where(use[:, None], lse_newton, lse)
            s["solved"] = s["solved"] + newton
            s["swept"] = s["swept"] + (stepping & ~newton)
        else:
            lse = _trial_lse(p, d[:, None, :]).squeeze(1)
            s["swept"] = s["swept"] + stepping
        y_new = y + (d[:, :, None] - (lse if log_b is None else lse - log_b)[:, None, :])
        if advancing:
            kappa = torch.where(pending, torch.clamp(1.0 / scale, max=KAPPA), 1.0)
            rescaled = _normalize_cols(y * kappa[:, None, None], log_b)
            y_new = torch.where(pending[:, None, None], rescaled, y_new)
            scale = torch.where(kappa * scale >= 1 - 1e-6, 1.0, kappa * scale)
        # At a check every live element steps; between checks the done ones stay frozen.
        y = y_new if check else torch.where(live[:, None, None], y_new, y)
        it += 1
    return out, iterations, sweeps, newton_steps, errors, reached
