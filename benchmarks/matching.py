"""Matching: the batched ``matching`` vs a Python loop over scipy, and vs ``lap``.

Scores ``randn(B, N, N)`` (float32 torch tensor, as a model produces them); every solver gets
the same tensor and returns ``(B, N)`` permutations, checked to be identical to the scipy loop.

- **ours**: ``pyro_permutations.ops.matching(x)``: validation, one float64 conversion of the
  whole batch, row and column minima subtracted (the solution is unchanged, the solver
  faster), then ``scipy.optimize.linear_sum_assignment`` on each matrix, split over
  ``torch.get_num_threads()`` threads for large batches (the solver releases the GIL);
  timed with 1 thread and with one per core (torch's default).
- **scipy loop**: ``x.numpy()`` once, then ``linear_sum_assignment(x[b], maximize=True)`` for
  each ``b`` in a Python loop.
- **lap loop**: the same loop over ``lap.lapjv(-x[b].astype(float64))`` (Jonker-Volgenant).

Times are medians of repeated calls (at least 0.3 s of repeats, at most five).
"""

import os

import numpy as np
import scipy.optimize
import torch

from benchmarks._common import doc_markdown, median_time, table
from pyro_permutations.ops import matching

FULL = {"b": 1000, "ns": [10, 50, 200]}
QUICK = {"b": 20, "ns": [5, 10]}

TARGET_N = 50
TARGET = 1.5

#: Printed under the target when it is missed.
WHY_MISSED = (
    "Why the target can be missed: the work is scipy's solver, per matrix, in C. On one thread "
    "the reduced costs make it about 1.4x faster, but the reduction itself (five passes over "
    "the batch in float64) gives back part of that, leaving about 1.1-1.2x; the rest must come "
    "from solving on both cores at once, which `linear_sum_assignment` allows (it releases the "
    "GIL). When other processes already keep the cores busy (see the load averages), the "
    "second thread finds no free core and the threaded time is no better than one thread's."
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
    if lap_loop is None:
        lines += [
            "",
            "`lap` is not importable (lapx, a dependency, brings it); its columns are empty.",
        ]
    return "\n".join(lines)
