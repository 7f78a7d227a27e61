"""Sinkhorn backward: unrolled vs implicit differentiation, time and peak memory.

Scores ``randn(B, N, N) / tau`` with ``requires_grad``; the loss is ``<S(X), C>_F`` for a fixed
random ``C``; the time is one forward and one backward pass.

- **unrolled, L sweeps**: ``log_sinkhorn(x, n_iters=L, grad="unrolled")``; autograd records
  every sweep, so memory grows with ``L``.
- **implicit, L sweeps**: the same ``L`` sweeps run without recording
  (``torch.no_grad``), then the library's implicit backward (``ImplicitSinkhorn``, the one
  ``grad="implicit"`` uses: one ``(N, N)`` solve at the fixed point). ``log_sinkhorn`` itself
  pairs ``grad="implicit"`` only with stopping on ``tol``, so this row composes its parts to
  compare at equal forward work; the gradient is exact only at convergence (column "grad diff"
  is the relative difference between the two modes' gradients).
- **tol rows**: the public default, ``log_sinkhorn(x, tol=1e-3)`` (Newton), with
  ``grad="implicit"`` and ``grad="unrolled"`` (back-propagating through the Newton steps).

Peak memory is measured, not estimated: every configuration runs in one fresh subprocess with
``MALLOC_MMAP_THRESHOLD_=65536`` (so freed tensors go back to the OS at once); before the first
call the process's resident-set high-water mark (``VmHWM``) is reset through
``/proc/self/clear_refs``, and the peak is ``VmHWM`` after the call minus ``VmRSS`` before it:
everything the forward and backward passes allocate beyond the inputs. The kernel updates
its resident-set counters in batches of pages, so peaks under about 0.5 MiB are within the
resolution of the measurement.
"""

import torch

from benchmarks._common import doc_markdown, measured_in_subprocess, table
from pyro_permutations.ops import log_sinkhorn
from pyro_permutations.ops._sinkhorn_implicit import ImplicitSinkhorn
from pyro_permutations.ops.sinkhorn import _sweeps

FULL = {"b": 10, "n": 50, "tau": 0.1, "iters": [10, 100, 1000]}
QUICK = {"b": 2, "n": 5, "tau": 0.1, "iters": [2, 10]}


def _inputs(b, n, tau):
    g = torch.Generator().manual_seed(0)
    x = (torch.randn(b, n, n, generator=g) / tau).requires_grad_()
    c = torch.randn(b, n, n, generator=g)
    return x, c


def forward(x, mode, iters):
    """``log S(x)`` by one of the benchmarked routes."""
    if mode == "unrolled":
        return log_sinkhorn(x, n_iters=iters, grad="unrolled")
    if mode == "implicit":
        with torch.no_grad():
            solved = _sweeps(x.detach(), iters)
        return ImplicitSinkhorn.apply(x, solved)
    return log_sinkhorn(x, tol=1e-3, grad=mode.removeprefix("tol-"))


def gradient(x, c, mode, iters):
    x.grad = None
    (forward(x, mode, iters).exp() * c).sum().backward()
    return x.grad


def workload(b, n, tau, mode, iters):
    """Set-up for :func:`benchmarks._common.measured_in_subprocess`: forward and backward."""
    x, c = _inputs(b, n, tau)
    gradient(x, c, mode, min(iters, 2))  # warm-up

    def run():
        gradient(x, c, mode, iters)

    return run


def run(quick, log=print):
    p = QUICK if quick else FULL
    configs = [
        {"b": p["b"], "n": p["n"], "tau": p["tau"], "mode": mode, "iters": iters}
        for iters in p["iters"]
        for mode in ("unrolled", "implicit")
    ]
    if not quick:
        configs += [
            {"b": p["b"], "n": p["n"], "tau": p["tau"], "mode": mode, "iters": 0}
            for mode in ("tol-implicit", "tol-unrolled")
        ]
    results = measured_in_subprocess("benchmarks.sinkhorn_backward:workload", configs)
    x, c = _inputs(p["b"], p["n"], p["tau"])
    by_key, rows = {}, []
    for config, result in zip(configs, results):
        mode, iters = config["mode"], config["iters"]
        by_key[mode, iters] = result
        if mode in ("implicit", "tol-implicit"):
            other = "unrolled" if mode == "implicit" else "tol-unrolled"
            g0 = gradient(x, c, other, iters).clone()
            g1 = gradient(x, c, mode, iters).clone()
            diff = f"{((g1 - g0).norm() / g0.norm()).item():.1e}"
        else:
            diff = ""
        label = f"{mode.removeprefix('tol-')}, tol 1e-3 (Newton)" if iters == 0 else mode
        rows.append(
            [
                label,
                iters if iters else "",
                f"{result['seconds']:.4f}",
                f"{result['peak_mib']:.1f}",
                diff,
            ]
        )
        log(" | ".join(str(v) for v in rows[-1]))

    iters = p["iters"]
    impl = [by_key["implicit", k]["peak_mib"] for k in iters]
    unr = [by_key["unrolled", k]["peak_mib"] for k in iters]
    # "Flat": the largest peak within 1 MiB or 25 % of the smallest.
    flat = max(impl) <= max(1.25 * min(impl), min(impl) + 1.0)
    lines = [
        doc_markdown(__doc__),
        "",
        f"B = {p['b']}, N = {p['n']}, tau = {p['tau']:g}; seconds are the median of up to "
        "three calls.",
        "",
        table(
            ["gradient", "sweeps L", "forward + backward s", "peak MiB", "grad diff"],
            rows,
        ),
        "",
        "**Targets**: implicit peak memory flat in the number of iterations; implicit faster "
        "than unrolled from 100 iterations up.",
        "",
        f"- Memory: implicit peaks {', '.join(f'{m:.1f}' for m in impl)} MiB for L = "
        f"{', '.join(map(str, iters))} ({'flat: met' if flat else 'not flat: MISSED'}); "
        f"unrolled {', '.join(f'{m:.1f}' for m in unr)} MiB.",
    ]
    for k in iters:
        if k < 100 and not quick:
            continue
        t_u, t_i = by_key["unrolled", k]["seconds"], by_key["implicit", k]["seconds"]
        met = t_i < t_u
        lines.append(
            f"- Time at L = {k}: implicit {t_i:.4f} s, unrolled {t_u:.4f} s: implicit "
            f"{t_u / t_i:.2f}x as fast ({'met' if met else 'MISSED'})."
        )
    return "\n".join(lines)
