"""Peers: ``matching`` against the strongest installed linear assignment solvers.

Scores ``randn(B, N, N)`` (float32 torch tensor) at (B, N) = (1000, 50), (100, 200),
(1, 2000); every solver gets the same tensor (converted as it needs, inside the timing) and
its matchings are checked to reach scipy's optimal total (to 1e-9 relative) before timing.
Peers are installed by `pip install -e ".[peers]"` (`lapx`, `pygmtools`,
`torch-linear-assignment`); a missing one is reported "not installed".

- **ours (scipy path)**: `pyro_permutations.ops.matching(x)` on a CPU tensor (reduced costs,
  scipy per matrix, threads for large batches), torch's default thread count.
- **ours (torch solver)**: the same call routed to the batched torch solver that `matching`
  uses for CUDA tensors (`ops/_assignment_torch.py`: auction start, then shortest augmenting
  paths in lockstep over the batch), here on the CPU with 1 torch thread (its operations are
  small; more threads only add overhead on these cores).
- **scipy loop**: `linear_sum_assignment(x[b], maximize=True)` for each `b`.
- **lapx lapjvx_batch / lapjvs_batch**: lapx's batch solvers (Jonker-Volgenant in C++, one
  thread per core) on the float64 costs `-x`.
- **pygmtools hungarian**: `pygmtools.hungarian(x, backend="pytorch")` (scipy per matrix;
  returns permutation matrices).
- **torch-linear-assignment**: `batch_linear_assignment(-x)` (on CPU tensors it loops over
  scipy; its own kernel is for CUDA).

When a GPU is present a second table times the CUDA solvers on a CUDA tensor: ours
(`matching(x_cuda)`, solved on the device), torch-linear-assignment's CUDA path and the scipy
loop including the copies to and from the CPU, each ended by `torch.cuda.synchronize()`.

Times are medians of repeated calls (at least 0.3 s of repeats, at most five; one call when the
first takes longer than 0.3 s).
"""

import contextlib
import importlib
import os

import numpy as np
import scipy.optimize
import torch

from benchmarks._common import doc_markdown, median_time, table, version
from pyro_permutations.ops import matching

matching_module = importlib.import_module("pyro_permutations.ops.matching")

FULL = [(1000, 50), (100, 200), (1, 2000)]
QUICK = [(5, 8), (2, 20)]


def cores():
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


@contextlib.contextmanager
def torch_threads(threads):
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@contextlib.contextmanager
def torch_solver_on_cpu():
    """``matching`` routed to the torch solver for CPU tensors too."""
    before = matching_module.TORCH_SOLVER_DEVICES
    matching_module.TORCH_SOLVER_DEVICES = before + ("cpu",)
    try:
        yield
    finally:
        matching_module.TORCH_SOLVER_DEVICES = before


def scipy_loop(x):
    a = x.cpu().numpy()
    return np.stack([scipy.optimize.linear_sum_assignment(m, maximize=True)[1] for m in a])


def ours_torch(x):
    with torch_threads(1), torch_solver_on_cpu():
        return matching(x)


def peer_solvers():
    """``{name: solver or None}``: each solver maps the float32 scores ``(B, N, N)`` to
    permutations ``(B, N)`` (a numpy array or tensor); ``None`` when not installed."""
    solvers = {}
    try:
        import lap

        if not hasattr(lap, "lapjvx_batch"):
            raise ImportError("lap without batch solvers (install lapx)")
    except ImportError:
        solvers["lapx lapjvx_batch"] = solvers["lapx lapjvs_batch"] = None
    else:

        def lapx(batch_solver):
            def solve(x):
                cost = -x.numpy().astype(np.float64)
                rows, cols = batch_solver(cost, return_cost=False, n_threads=cores())
                out = np.empty(x.shape[:2], dtype=np.int64)
                for b, (r, c) in enumerate(zip(rows, cols)):
                    out[b, r] = c
                return out

            return solve

        solvers["lapx lapjvx_batch"] = lapx(lap.lapjvx_batch)
        solvers["lapx lapjvs_batch"] = lapx(lap.lapjvs_batch)
    try:
        import pygmtools
    except ImportError:
        solvers["pygmtools hungarian"] = None
    else:
        solvers["pygmtools hungarian"] = lambda x: pygmtools.hungarian(x, backend="pytorch").argmax(
            -1
        )
    try:
        from torch_linear_assignment import batch_linear_assignment
    except ImportError:
        solvers["torch-linear-assignment"] = None
    else:
        solvers["torch-linear-assignment"] = lambda x: batch_linear_assignment(-x)
    return solvers


def as_perm(perm):
    """A solver's permutations as a CPU long tensor."""
    return torch.as_tensor(np.asarray(perm.cpu() if torch.is_tensor(perm) else perm)).long()


def totals(x, perm):
    """Per-matrix totals (float64) of the permutations ``perm`` ``(B, N)`` on ``x``."""
    return x.double().cpu().gather(-1, as_perm(perm).unsqueeze(-1)).squeeze(-1).sum(-1)


def is_optimal(x, perm, best):
    """``perm`` holds permutations reaching the optimal totals ``best``."""
    is_perm = torch.equal(
        as_perm(perm).sort(-1).values, torch.arange(x.shape[-1]).expand(x.shape[:2])
    )
    return is_perm and bool(torch.allclose(totals(x, perm), best, rtol=1e-9, atol=1e-9))


def cpu_table(shapes, log):
    solvers = {
        "ours (scipy path)": lambda x: matching(x),
        "ours (torch solver, 1 thread)": ours_torch,
        "scipy loop": scipy_loop,
        **peer_solvers(),
    }
    names = list(solvers)
    ours = "ours (scipy path)"
    peers = [name for name in names if not name.startswith("ours")]
    rows, targets, per_shape = [], [], []
    for b, n in shapes:
        x = torch.randn(b, n, n, generator=torch.Generator().manual_seed(b * n))
        best = totals(x, scipy_loop(x))
        times = {}
        for name, solve in solvers.items():
            if solve is None:
                times[name] = None
                continue
            if not is_optimal(x, solve(x), best):
                raise AssertionError(f"{name} is not optimal at B = {b}, N = {n}")
            times[name] = median_time(lambda solve=solve, x=x: solve(x))
            log(f"B = {b}, N = {n}, {name}: {times[name]:.4f} s")
        rows.append(
            [b, n] + [f"{times[k]:.4g}" if times[k] is not None else "not installed" for k in names]
        )
        timed = {k: t for k, t in times.items() if k in peers and t is not None}
        fastest = min(timed, key=timed.get)
        ratio = timed[fastest] / times[ours]
        targets.append(
            f"- B = {b}, N = {n}: ours {times[ours]:.4g} s, fastest peer {fastest} "
            f"{timed[fastest]:.4g} s: {ratio:.2f}x "
            + ("(met)" if ratio >= 1 else f"(MISSED: {1 / ratio:.2f}x slower)")
        )
        torch_time = times["ours (torch solver, 1 thread)"]
        per_shape.append(
            f"- B = {b}, N = {n}: the scipy path {torch_time / times[ours]:.1f}x faster than "
            "the torch solver on this CPU"
        )
    text = table(["B", "N"] + [f"{k} s" for k in names], rows)
    return text, targets, per_shape


def cuda_table(shapes, log):
    def synced(fn):
        def run(x):
            out = fn(x)
            torch.cuda.synchronize()
            return out

        return run

    solvers = {
        "ours (torch solver on CUDA)": synced(matching),
        "scipy loop (with copies)": synced(lambda x: torch.from_numpy(scipy_loop(x)).to(x.device)),
    }
    try:
        from torch_linear_assignment import batch_linear_assignment

        solvers["torch-linear-assignment (CUDA)"] = synced(lambda x: batch_linear_assignment(-x))
    except ImportError:
        solvers["torch-linear-assignment (CUDA)"] = None
    rows = []
    for b, n in shapes:
        x = torch.randn(b, n, n, generator=torch.Generator().manual_seed(b * n)).cuda()
        best = totals(x, scipy_loop(x))
        row = [b, n]
        for name, solve in solvers.items():
            if solve is None:
                row.append("not installed")
                continue
            if not is_optimal(x, solve(x), best):
                raise AssertionError(f"{name} is not optimal at B = {b}, N = {n} (CUDA)")
            t = median_time(lambda solve=solve, x=x: solve(x))
            log(f"CUDA B = {b}, N = {n}, {name}: {t:.4f} s")
            row.append(f"{t:.4g}")
        rows.append(row)
    return table(["B", "N"] + [f"{k} s" for k in solvers], rows)


def run(quick, log=print):
    shapes = QUICK if quick else FULL
    versions = ", ".join(
        f"{pkg} {version(pkg)}" for pkg in ["lapx", "pygmtools", "torch-linear-assignment"]
    )
    text, targets, per_shape = cpu_table(shapes, log)
    lines = [
        doc_markdown(__doc__),
        "",
        f"Peer versions: {versions}; {cores()} cores.",
        "",
        "### Matching on the CPU",
        "",
        text,
        "",
        "**Target**: `matching` at least as fast as the fastest peer at every shape on CPU.",
        "",
        *targets,
        "",
        "**Which solver where** (why `matching` keeps scipy for CPU tensors and uses the torch "
        "solver only for CUDA ones):",
        "",
        *per_shape,
    ]
    if torch.cuda.is_available():
        lines += [
            "",
            f"### Matching on CUDA ({torch.cuda.get_device_name()})",
            "",
            cuda_table(shapes, log),
        ]
    else:
        lines += ["", "No GPU here: the CUDA table is not run."]
    return "\n".join(lines)
