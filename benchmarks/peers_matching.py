"""Peers: ``matching`` against the strongest installed assignment solvers.

Scores ``randn(B, N, N)`` (float32 torch tensor) at (B, N) = (1000, 50), (100, 200),
(1, 2000), {instances} independent instances per shape (seeds ``B * N + 7919 k``, k = 0 ..
{last}): a Jonker-Volgenant solver's time on one random matrix varies by up to 2x from one
instance to the next (its augmenting paths depend on the draw), so one instance can decide a
comparison by luck. Every solver gets the same tensors (converted as it needs, inside the
timing) and its matchings are checked to reach scipy's optimal totals (to 1e-9 relative) on
every instance before timing. Peers are installed by `pip install -e ".[peers]"`
(`pygmtools`, `torch-linear-assignment`; `lapx` is a dependency of the library); a missing
one is reported "not installed".

- **ours**: `pyro_permutations.ops.matching(x)` on a CPU tensor as a user calls it, with
  torch's thread count (`--threads`): it calls lapx's `lapjvr_batch` (float64) on
  row-reduced costs `max_k x_ik - x_ij`.
- **ours (scipy path)**: the same call with lapx switched off, as for NaN, `+inf` or huge
  scores and where lapx is missing (row- and column-reduced costs, scipy per matrix, threads
  for large batches).
- **ours (torch solver)**: the same call routed to the batched torch solver that `matching`
  uses for CUDA tensors (`ops/_assignment_torch.py`: auction start, then shortest augmenting
  paths in lockstep over the batch), here on the CPU with 1 torch thread (its operations are
  small; more threads only add overhead on these cores).
- **scipy loop**: `linear_sum_assignment(x[b], maximize=True)` for each `b`.
- **lapx lapjvr_batch / lapjvh_batch / lapjvx_batch / lapjvs_batch**: lapx's batch solvers
  (Jonker-Volgenant: Rust and Rust/C++ completions, and the two C++ ones; `lapjvs` in its
  default float32 kernel) on the float64 costs `-x`, with as many threads as torch has.
- **pygmtools hungarian**: `pygmtools.hungarian(x, backend="pytorch")` (scipy per matrix;
  returns permutation matrices).
- **torch-linear-assignment**: `batch_linear_assignment(-x)` (on CPU tensors it loops over
  scipy; its own kernel is for CUDA).

When a GPU is present a second table times the CUDA solvers on CUDA tensors: ours
(`matching(x_cuda)`, solved on the device), torch-linear-assignment's CUDA path and the scipy
loop including the copies to and from the CPU, each ended by `torch.cuda.synchronize()`.

Each time is the median of repeated calls on one instance (at least 0.3 s of repeats, at most
five; one call when the first takes longer than 0.3 s); a table gives their mean over the
instances, and the target is decided on it. The ratios of single instances are listed too.
"""

import contextlib
import importlib
import statistics

import numpy as np
import scipy.optimize
import torch

from benchmarks._common import cores, doc_markdown, median_time, table, version
from benchmarks.matching import with_backend
from pyro_permutations.ops import matching

matching_module = importlib.import_module("pyro_permutations.ops.matching")

FULL = [(1000, 50), (100, 200), (1, 2000)]
QUICK = [(5, 8), (2, 20)]
#: Random instances per shape (``QUICK_INSTANCES`` in the quick mode).
INSTANCES = 5
QUICK_INSTANCES = 2
#: lapx's batch solvers timed as peers (``lap.<name>_batch``).
LAPX_PEERS = ["lapjvr", "lapjvh", "lapjvx", "lapjvs"]


@contextlib.contextmanager
def torch_threads(threads):
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def ours_scipy(x):
    """``matching`` with its lapx path switched off: every CPU matrix goes to scipy."""
    return with_backend("scipy", lambda: matching(x))


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

        if not hasattr(lap, "lapjvr_batch"):
            raise ImportError("lap without the batch solvers of lapx >= 0.11.1")
    except ImportError:
        solvers.update(dict.fromkeys(f"lapx {k}_batch" for k in LAPX_PEERS))
    else:

        def lapx(batch_solver, **options):
            def solve(x):
                cost = np.negative(x.numpy(), dtype=np.float64)
                threads = torch.get_num_threads()
                rows, cols = batch_solver(cost, return_cost=False, n_threads=threads, **options)
                return np.concatenate(cols).reshape(x.shape[:2])  # square: rows in order

            return solve

        for name in LAPX_PEERS:
            options = {"precision": "float64"} if name in ("lapjvr", "lapjvh") else {}
            solvers[f"lapx {name}_batch"] = lapx(getattr(lap, f"{name}_batch"), **options)
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


def instances(b, n, count, device="cpu"):
    """``count`` score tensors ``randn(b, n, n)``, seeds ``b * n + 7919 k``."""
    return [
        torch.randn(b, n, n, generator=torch.Generator().manual_seed(b * n + 7919 * k)).to(device)
        for k in range(count)
    ]


def measure(solvers, shapes, count, log, where="", device="cpu"):
    """``{(b, n): {name: [seconds per instance] or None}}``: every installed solver checked
    optimal on each instance, then timed on it."""
    results = {}
    for b, n in shapes:
        xs = instances(b, n, count, device)
        bests = [totals(x, scipy_loop(x)) for x in xs]
        times = {}
        for name, solve in solvers.items():
            if solve is None:
                times[name] = None
                continue
            times[name] = []
            for k, (x, best) in enumerate(zip(xs, bests)):
                if not is_optimal(x, solve(x), best):
                    raise AssertionError(f"{name} is not optimal at B = {b}, N = {n}{where}")
                times[name].append(median_time(lambda solve=solve, x=x: solve(x)))
                log(f"{where}B = {b}, N = {n}, instance {k}, {name}: {times[name][-1]:.4f} s")
        results[b, n] = times
    return results


def mean_table(results, names):
    """Markdown: each solver's mean time over the instances, per shape."""
    rows = [
        [b, n]
        + [
            f"{statistics.fmean(times[k]):.4g}" if times[k] is not None else "not installed"
            for k in names
        ]
        for (b, n), times in results.items()
    ]
    return table(["B", "N"] + [f"{k} s" for k in names], rows)


def cpu_table(shapes, log, count=INSTANCES):
    """``(table, target lines, per-instance lines, which-solver lines)`` on the CPU."""
    solvers = {
        "ours": lambda x: matching(x),
        "ours (scipy path)": ours_scipy,
        "ours (torch solver, 1 thread)": ours_torch,
        "scipy loop": scipy_loop,
        **peer_solvers(),
    }
    names = list(solvers)
    peers = [name for name in names if not name.startswith("ours")]
    results = measure(solvers, shapes, count, log)
    targets, single, per_shape = [], [], []
    for (b, n), times in results.items():
        mean = {k: statistics.fmean(t) for k, t in times.items() if t is not None}
        timed = {k: t for k, t in mean.items() if k in peers}
        fastest = min(timed, key=timed.get)
        ratio = timed[fastest] / mean["ours"]
        targets.append(
            f"- B = {b}, N = {n}: ours {mean['ours']:.4g} s, fastest peer {fastest} "
            f"{timed[fastest]:.4g} s (means over {count} instances): {ratio:.2f}x "
            + ("(met)" if ratio >= 1 else f"(MISSED: {1 / ratio:.2f}x slower)")
        )
        # Per instance, against the peer fastest on that instance.
        ratios = [
            min(times[k][i] for k in timed) / times["ours"][i] for i in range(len(times["ours"]))
        ]
        single.append(
            f"- B = {b}, N = {n}: "
            + ", ".join(f"{r:.2f}x" for r in ratios)
            + f" (below 1 on {sum(r < 1 for r in ratios)} of {len(ratios)})"
        )
        per_shape.append(
            f"- B = {b}, N = {n}: the default path "
            f"{mean['ours (scipy path)'] / mean['ours']:.2f}x the scipy path and "
            f"{mean['ours (torch solver, 1 thread)'] / mean['ours']:.1f}x the torch solver on "
            "this CPU"
        )
    return mean_table(results, names), targets, single, per_shape


def cuda_table(shapes, log, count=INSTANCES):
    """Markdown: the CUDA solvers' mean times over the instances, per shape."""

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
    results = measure(solvers, shapes, count, log, where="CUDA ", device="cuda")
    return mean_table(results, list(solvers))


def run(quick, log=print):
    shapes = QUICK if quick else FULL
    count = QUICK_INSTANCES if quick else INSTANCES
    versions = ", ".join(
        f"{pkg} {version(pkg)}" for pkg in ["lapx", "pygmtools", "torch-linear-assignment"]
    )
    text, targets, single, per_shape = cpu_table(shapes, log, count)
    lines = [
        doc_markdown(__doc__).format(instances=count, last=count - 1),
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
        "Single instances (the fastest peer on each instance over ours):",
        "",
        *single,
        "",
        "**Which solver where** (why `matching` sends CPU matrices to lapx, and uses the torch "
        "solver only for CUDA tensors; times over ours):",
        "",
        *per_shape,
    ]
    if torch.cuda.is_available():
        lines += [
            "",
            f"### Matching on CUDA ({torch.cuda.get_device_name()})",
            "",
            cuda_table(shapes, log, count),
        ]
    else:
        lines += ["", "No GPU here: the CUDA table is not run."]
    return "\n".join(lines)
