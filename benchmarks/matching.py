"""Matching: the batched ``matching`` vs a Python loop over scipy, and vs ``lap``.

Scores ``randn(B, N, N)`` (float32 torch tensor, as a model produces them); every solver gets
the same tensor and returns ``(B, N)`` permutations, checked to be identical to the scipy loop.

- **ours**: ``pyro_permutations.ops.matching(x)``: validation, one float64 copy of the whole
  batch with each row's largest score subtracted (square; the solution is unchanged, the
  solver faster), then lapx's ``lapjvr_batch`` (Jonker-Volgenant, float64), with
  ``torch.get_num_threads()`` of its threads for large batches of large matrices;
  timed with 1 thread and with one per core (torch's default).
- **scipy loop**: ``x.numpy()`` once, then ``linear_sum_assignment(x[b], maximize=True)`` for
  each ``b`` in a Python loop.
- **lap loop**: the same loop over ``lap.lapjv(-x[b].astype(float64))`` (Jonker-Volgenant).

A second table, **back ends**, times ``matching`` with every matrix sent to scipy (its path
for NaN, ``+inf`` and huge scores, and without lapx: row- and column-reduced costs, then
``linear_sum_assignment`` per matrix) and with every matrix sent to lapx, on one thread,
square and rectangular (``randn(B, N, M)``), to show where each is faster; and ``matching``
as it ships, which sends a few small matrices (``SCIPY_MAX_MATRICES``, ``SCIPY_MAX_ENTRIES``)
to scipy as they are, with no reduction, and everything else to lapx.

Times are medians of repeated calls (at least 0.3 s of repeats, at most five).
"""

import importlib
import os

import numpy as np
import scipy.optimize
import torch

from benchmarks._common import doc_markdown, median_time, table
from pyro_permutations.ops import matching

matching_module = importlib.import_module("pyro_permutations.ops.matching")

FULL = {"b": 1000, "ns": [10, 50, 200]}
QUICK = {"b": 20, "ns": [5, 10]}
BACKEND_SHAPES_FULL = [
    (1, 3, 3), (1, 10, 10), (1000, 3, 3), (1000, 8, 8), (1000, 16, 16), (1000, 24, 24),
    (1000, 50, 50), (100, 200, 200), (1, 2000, 2000),
    (100, 10, 15), (100, 30, 45), (100, 48, 72), (100, 64, 96), (10, 50, 80), (1, 200, 300),
    (1, 300, 200),
]  # fmt: skip
BACKEND_SHAPES_QUICK = [(20, 5, 5), (4, 30, 30), (3, 4, 6)]

TARGET_N = 50
TARGET = 1.5

#: Printed under the target when it is missed.
WHY_MISSED = (
    "Why the target can be missed: the work is the solver's, per matrix, in compiled code; "
    "`matching` adds a row reduction (one float64 pass that makes lapx's paths shorter) and "
    "its checks. When other processes keep the cores busy (see the load averages), the "
    "times of both sides grow unevenly; rerun on a quiet machine."
)


def scipy_loop(x):
    a = x.numpy()
    return np.stack([scipy.optimize.linear_sum_assignment(m, maximize=True)[1] for m in a])


def lap_solver():
    try:
        import lap
    except ImportError:
        return None

    def lap_loop(x):
        cost = -x.numpy().astype(np.float64)
        return np.stack([lap.lapjv(m)[1] for m in cost])

    return lap_loop


def with_threads(threads, fn):
    """``fn()`` with ``torch.set_num_threads(threads)`` (``matching`` uses that many)."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return fn()
    finally:
        torch.set_num_threads(before)


def with_backend(backend, fn):
    """``fn()`` with ``matching`` sending every CPU matrix to ``"lapx"`` or to ``"scipy"``
    (reduced costs), or as it ships (``"default"``)."""
    before = matching_module.USE_LAPX, matching_module.SCIPY_MAX_MATRICES
    if backend != "default":
        matching_module.USE_LAPX = backend == "lapx"
        matching_module.SCIPY_MAX_MATRICES = 0
    try:
        return fn()
    finally:
        matching_module.USE_LAPX, matching_module.SCIPY_MAX_MATRICES = before


def backends_table(quick, log):
    """Markdown lines: scipy against lapx inside ``matching``, one thread, per shape."""
    if matching_module._lapjvr_batch is None:
        return ["lapx is not importable: the back-ends table is not run."]
    rows = []
    for b, n, m in BACKEND_SHAPES_QUICK if quick else BACKEND_SHAPES_FULL:
        x = torch.randn(b, n, m, generator=torch.Generator().manual_seed(b + n + m))
        backends = ("scipy", "lapx", "default")
        perms = [with_backend(u, lambda x=x: matching(x)) for u in backends]
        totals = [x.double().gather(-1, p.clamp(min=0).unsqueeze(-1)).squeeze(-1) for p in perms]
        totals = [(t * (p >= 0)).sum(-1) for t, p in zip(totals, perms)]
        for name, total in zip(backends[1:], totals[1:]):
            if not torch.allclose(totals[0], total, rtol=1e-9, atol=1e-9):
                raise AssertionError(f"scipy's and {name}'s totals differ at {b}, {n}, {m}")
        t_scipy, t_lapx, t_default = (
            with_threads(
                1, lambda u=u, x=x: with_backend(u, lambda: median_time(lambda: matching(x)))
            )
            for u in backends
        )
        route = "scipy as is" if matching_module._few_small(x) else "lapx"
        rows.append(
            [b, n, m, f"{t_scipy:.3g}", f"{t_lapx:.3g}", f"{t_scipy / t_lapx:.2f}x"]
            + [f"{t_default:.3g}", route]
        )
        log("back ends | " + " | ".join(str(v) for v in rows[-1]))
    return [
        "**Back ends** (1 thread; as it ships, `matching` sends a few small matrices with "
        "finite scores to scipy as they are, every other CPU matrix without NaN, `+inf` or "
        "scores beyond 2^1000 to lapx):",
        "",
        table(
            ["B", "N", "M", "scipy s", "lapx s", "scipy / lapx", "as shipped s", "its route"],
            rows,
        ),
    ]


def run(quick, log=print):
    p = QUICK if quick else FULL
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    lap_loop = lap_solver()
    torch.manual_seed(0)
    rows, target_line = [], None
    for n in p["ns"]:
        x = torch.randn(p["b"], n, n)
        ref = scipy_loop(x)
        ours = matching(x).numpy()
        if not np.array_equal(ours, ref):
            raise AssertionError(f"matching differs from the scipy loop at N = {n}")
        t_scipy = median_time(lambda x=x: scipy_loop(x))
        t_one = with_threads(1, lambda x=x: median_time(lambda: matching(x)))
        t_ours = with_threads(cores, lambda x=x: median_time(lambda: matching(x)))
        row = [p["b"], n, f"{t_one:.4f}", f"{t_ours:.4f}", f"{t_scipy:.4f}"]
        row += [f"{t_scipy / t_one:.2f}x", f"{t_scipy / t_ours:.2f}x"]
        if lap_loop is None:
            row += ["not installed", ""]
        else:
            same = np.array_equal(lap_loop(x), ref)
            t_lap = median_time(lambda x=x: lap_loop(x))
            row += [f"{t_lap:.4f}" + ("" if same else " (differs)"), f"{t_lap / t_ours:.2f}x"]
        rows.append(row)
        log(" | ".join(str(v) for v in row))
        if n == TARGET_N:
            ratio = t_scipy / t_ours
            target_line = f"- B = {p['b']}, N = {n}, {cores} threads: {ratio:.2f}x " + (
                "(met)"
                if ratio >= TARGET
                else f"(MISSED: {TARGET / ratio:.2f}x short of {TARGET:g}x)"
            )
    lines = [
        doc_markdown(__doc__),
        "",
        table(
            [
                "B",
                "N",
                "ours s, 1 thread",
                f"ours s, {cores} threads",
                "scipy loop s",
                "scipy / ours, 1 thread",
                f"scipy / ours, {cores} threads",
                "lap loop s",
                f"lap / ours, {cores} threads",
            ],
            rows,
        ),
        "",
        f"**Target**: batched matching at least {TARGET:g}x the scipy loop at B = 1000, "
        f"N = {TARGET_N}.",
        "",
        target_line or f"- (N = {TARGET_N} not run in this mode)",
    ]
    if target_line and "MISSED" in target_line:
        lines += ["", WHY_MISSED]
    lines += ["", *backends_table(quick, log)]
    if lap_loop is None:
        lines += [
            "",
            "`lap` is not importable (lapx, a dependency, brings it); its columns are empty.",
        ]
    return "\n".join(lines)
