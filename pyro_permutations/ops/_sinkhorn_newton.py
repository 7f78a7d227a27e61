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
an exponential of every entry (:func:`_col_lse`). Nothing is computed in subnormal numbers,
which are 20 to 50 times slower on CPUs (see :func:`_tiny_limits`).

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

from pyro_permutations.ops._spd_solve import spd_solve

#: Scores are first scaled so that their range within one matrix is at most this.
START_SPREAD = 32.0
#: Factor by which the scale grows between stages.
KAPPA = 4.0
#: Marginal error at which an intermediate stage is considered solved.
STAGE_TOL = 0.1
#: Halvings tried by the line search before falling back to a Sinkhorn step.
MAX_HALVINGS = 30
#: Armijo constant.
ARMIJO = 1e-4
#: From this size on, Newton systems are solved by conjugate gradients, not formed.
CG_MIN_N = 256
#: Largest relative residual accepted from conjugate gradients.
CG_FORCING = 0.1
#: Most conjugate-gradient products per Newton step.
CG_MAX_ITER = 200
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


def _newton_direction(p, r, a=None, b=None):
    """``d`` solving ``(diag(r) - P P^T + 1 1^T / N + delta I) d = 1 - r``, per element.

    With marginals ``a`` ``(B, N)`` and ``b`` ``(B, M)`` the system is
    ``(diag(r) - P diag(1/b) P^T + 1 1^T / N + delta I) d = a - r``.

    ``p`` is flushed (:func:`_exp_flushed`); for the products ``P P^T`` entries below
    ``sqrt(tiny)`` are flushed too (they change ``H`` by less than ``N sqrt(tiny)``).

    Up to ``CG_MIN_N`` the system is formed and solved directly (batched Cholesky); above it,
    where forming ``P P^T`` and factorising cost ``O(N^3)``, it is solved inexactly by
    conjugate gradients with ``O(N^2)`` products (:func:`_newton_cg`).
    """
    n = p.shape[-2]
    grad = 1 - r if a is None else a - r
    plain = -torch.log(r) if a is None else -torch.log(r / a)
    p = torch.nn.functional.threshold(p, torch.finfo(p.dtype).tiny ** 0.5, 0.0)
    if n >= CG_MIN_N:
        d = _newton_cg(p, r, grad, b)
        ok = torch.isfinite(d).all(-1) & ((grad * d).sum(-1) > 0)
        return torch.where(ok[:, None], d, plain)
    eps = torch.finfo(p.dtype).eps
    pb = p if b is None else p / b.unsqueeze(-2)
    h = torch.bmm(pb, p.transpose(-1, -2)).neg_().add_(1.0 / n)
    h.diagonal(dim1=-2, dim2=-1).add_(r + 100 * eps)
    d, ok = spd_solve(h, grad)
    ok = ok & ((grad * d).sum(-1) > 0)
    return torch.where(ok[:, None], d, plain)


def _newton_cg(p, r, grad, b=None):
    """Inexact Newton direction by Jacobi-preconditioned conjugate gradients.

    The products ``H v = r * v - P (P^T v) + mean(v) + delta v`` (``P diag(1/b) P^T v`` with
    column marginals ``b``) cost ``O(N^2)`` each. Each
    element stops when its residual is below ``min(CG_FORCING, sqrt(|g|_inf)) |g|`` (an
    inexact Newton method: loose early, tight near the solution) or after ``CG_MAX_ITER``
    products.
    """
    n = p.shape[-2]
    delta = 100 * torch.finfo(p.dtype).eps
    # Floor of the CG denominators: positive in the dtype (1e-300 is 0 in float32), so the
    # branch torch.where discards is never 0/0, whose NaN would reach unrolled gradients.
    tiny = torch.finfo(p.dtype).tiny
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
    x = torch.zeros_like(grad)
    res = grad.clone()
    z = res / diag
    d = z.clone()
    rz = (res * z).sum(-1)
    active = res.norm(dim=-1) > target
    for _ in range(CG_MAX_ITER):
        if not active.any():
            break
        hd = matvec(d)
        dhd = (d * hd).sum(-1)
        alpha = torch.where(active & (dhd > 0), rz / dhd.clamp(min=tiny), 0.0)
        x = x + alpha[:, None] * d
        res = res - alpha[:, None] * hd
        z = res / diag
        rz_new = (res * z).sum(-1)
        beta = torch.where(active, rz_new / rz.clamp(min=tiny), 0.0)
        d = z + beta[:, None] * d
        rz = rz_new
        active = active & (res.norm(dim=-1) > target) & (dhd > 0)
    return x


def _line_search(y, p, d, slope, a=None, log_b=None):
    """Largest ``t = 2^-k`` with ``phi(t d) >= ARMIJO t slope``; ``phi(0) = 0`` here.

    ``p = exp(y)`` (subnormals flushed) gives each trial's normaliser by :func:`_col_lse`.
    With marginals, ``phi(f) = <a, f> - <b, lse(f) - log b>`` (``y``'s columns sum to ``b``).

    Returns ``(t, accepted, lse)``: ``lse`` is the column log-normaliser of ``y + t d`` at the
    accepted ``t`` (so the step needs no second normalisation).

    ``phi`` is a sum of ``2 N`` terms of order one, so the test allows for their rounding.
    """
    batch, n, m = y.shape
    if a is None:
        noise = 4 * n * torch.finfo(y.dtype).eps
    else:  # 2 N terms of order one, or a few large ones: scale with the total mass
        b = log_b.exp()
        noise = 4 * (a.sum(-1) + n + m) * torch.finfo(y.dtype).eps
    # Steps start within the trust region, which also keeps the normaliser cheap (_col_lse).
    limit = min(_tiny_limits(y.dtype)[1], STEP_CAP)
    width = (d.amax(-1) - d.amin(-1)).detach()
    t = torch.clamp(limit / width.clamp(min=1e-30), max=1.0)
    accepted = torch.zeros(batch, dtype=torch.bool, device=y.device)
    lse = torch.zeros(batch, m, dtype=y.dtype, device=y.device)
    todo = torch.arange(batch, device=y.device)  # elements still halving: only they are tried
    for _ in range(MAX_HALVINGS):
        sub = todo.numel() < batch
        y_t, p_t, d_t, t_t = (y[todo], p[todo], d[todo], t[todo]) if sub else (y, p, d, t)
        f = t_t[:, None] * d_t
        lse_t = _col_lse(y_t, p_t, f)
        if a is None:
            phi = f.sum(-1) - lse_t.sum(-1)
            noise_t = noise
        else:
            a_t, b_t, lb_t = (a[todo], b[todo], log_b[todo]) if sub else (a, b, log_b)
            phi = (a_t * f).sum(-1) - (b_t * (lse_t - lb_t)).sum(-1)
            noise_t = noise[todo] if sub else noise
        good = phi >= ARMIJO * t_t * (slope[todo] if sub else slope) - noise_t
        # Out of place: with ``grad="unrolled"`` autograd keeps ``t`` and ``lse``.
        lse = lse.index_put((todo[good],), lse_t[good])
        accepted[todo[good]] = True
        todo = todo[~good]
        if todo.numel() == 0:
            break
        t = t.index_put((todo,), 0.5 * t[todo])
    return t, accepted, lse


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
    """
    batch = y.shape[0]
    out = torch.empty_like(y)
    iterations = torch.zeros(batch, dtype=torch.long, device=y.device)
    sweeps = torch.zeros(batch, dtype=torch.long, device=y.device)
    newton_steps = torch.zeros(batch, dtype=torch.long, device=y.device)
    errors = torch.empty(batch, dtype=y.dtype, device=y.device)
    reached = torch.zeros(batch, dtype=torch.bool, device=y.device)

    # The schedule is a constant of the computation: no gradient flows through it.
    half_spread = _half_spread(y.detach()).clamp(min=1e-30)
    scale = (START_SPREAD / 2 / half_spread).clamp(max=1.0)
    a = None if log_a is None else log_a.exp()
    y = _normalize_cols(y * scale[:, None, None], log_b)
    idx = torch.arange(batch, device=y.device)
    newton = torch.zeros(batch, dtype=torch.bool, device=y.device)
    prev_err = torch.full((batch,), torch.inf, dtype=y.dtype, device=y.device)
    swept, solved = torch.zeros_like(sweeps), torch.zeros_like(newton_steps)  # per live element
    it = 0
    while True:
        p = _exp_flushed(y)
        r = p.sum(-1)
        u = r if a is None else r / a  # relative row sums
        err = (u - 1).abs().amax(-1)
        newton = newton | (err > PLAIN_RATE * prev_err)
        prev_err = err
        final = scale >= 1
        done = (final & (err <= tol)) | (it >= max_iter)
        if done.any():
            finished = idx[done]
            out[finished] = y[done]
            iterations[finished] = it
            sweeps[finished] = swept[done]
            newton_steps[finished] = solved[done]
            errors[finished] = err[done]
            reached[finished] = final[done]
            keep = ~done
            if not keep.any():
                break
            y, p, r, u, err, scale, final, idx, newton, prev_err, swept, solved = (
                t[keep]
                for t in (y, p, r, u, err, scale, final, idx, newton, prev_err, swept, solved)
            )
            if a is not None:
                a, log_b = a[keep], log_b[keep]
        # A plain sweep, or a Newton step where sweeps have stalled; elements whose stage is
        # solved move to the next scale instead.
        d = -torch.log(u)
        advance = ~final & (err <= STAGE_TOL)
        solved += newton & ~advance
        swept += ~newton & ~advance
        lse = None
        if newton.any():
            b = None if log_b is None else log_b.exp()
            d_newton = _newton_direction(p, r, a, b)
            grad = 1 - r if a is None else a - r
            t, ok, lse = _line_search(y, p, d_newton, (grad * d_newton).sum(-1), a, log_b)
            # A failed line search takes the plain Sinkhorn step instead.
            use = newton & ok
            d = torch.where(use[:, None], t[:, None] * d_newton, d)
            if not (use | advance).all():
                lse = None  # some elements take another step: normalise all afresh
        if advance.any():
            kappa = torch.where(advance, torch.clamp(1.0 / scale, max=KAPPA), 1.0)
            y = torch.where(advance[:, None, None], y * kappa[:, None, None], y + d[:, :, None])
            y = _normalize_cols(y, log_b)
            scale = torch.where(kappa * scale >= 1 - 1e-6, 1.0, kappa * scale)
        elif lse is not None:  # every element took its accepted Newton step
            y = y + d[:, :, None] - (lse if log_b is None else lse - log_b)[:, None, :]
        else:
            lse = _col_lse(y, p, d)
            y = y + (d[:, :, None] - (lse if log_b is None else lse - log_b)[:, None, :])
        it += 1
    return out, iterations, sweeps, newton_steps, errors, reached
