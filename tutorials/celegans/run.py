"""The sweeps of [BP] Figure 7 on the C. elegans connectome, stored point by point, then the
tables (markdown and CSV) and the figures (PNG).

Two studies share one store (a point met by both is fitted once):

- ``tolerance``: accuracy against the mean number of candidates per neuron, a sweep of the
  tolerance ``nu`` at the known fraction ``known``, for each number of worms in ``worms``;
- ``known``: accuracy against the fraction of known neurons, at each tolerance of
  ``known_tolerances``, with ``known_worms`` worms.

Each (worms, nu, known fraction, seed) is one simulated data set; every method is fitted to
it for ``budget`` seconds and its record is stored at once (:class:`~tutorials.checkpoint.
RecordStore`), so an interrupted run loses at most the fit in flight.
"""

import csv
import math
import multiprocessing
from pathlib import Path

import torch
from tqdm.auto import tqdm

from tutorials.celegans import experiment as E
from tutorials.celegans.data import load_connectome
from tutorials.celegans.model import DEFAULT_HYPER, VI_METHODS
from tutorials.checkpoint import RecordStore

RESULTS_FILE = "points.json"
KEY = ("worms", "nu", "known", "seed", "method")

REDUCED = {
    "n": None,
    "steps": 40,
    "noise_scale": 0.5,
    "seeds": 2,
    "budget": 4.0,
    # The collapsed sampler is the MCMC baseline; the uncollapsed one ("mcmc") runs on request.
    "methods": [m for m in E.METHODS if m != "mcmc"],
    "worms": [1, 5],
    "tolerances": [0.01, 0.05, 0.2],
    "known": 0.1,
    "known_fractions": [0.0, 0.1, 0.3],
    "known_tolerances": [0.05, 0.2],
    "known_worms": 1,
    # Recorded so that a store fitted with other VI hyper-parameters is refused, not mixed in.
    "vi_hyper": DEFAULT_HYPER,
}
FULL = {
    **REDUCED,
    # The methods are the reduced sweep's: the collapsed sampler is the MCMC baseline. The
    # uncollapsed one ("mcmc", with --methods) barely left its start in results/full-untuned.
    "seeds": 10,
    "budget": 30.0,
    "tolerances": [0.005, 0.01, 0.02, 0.05, 0.1, 0.2],
    "known_fractions": [0.0, 0.1, 0.25, 0.5],
    "known_tolerances": [0.02, 0.1],
}


def settings(config):
    """The (worms, nu, known) data settings of both studies, each once, in run order."""
    out = []
    for worms in config["worms"]:
        for nu in config["tolerances"]:
            out.append((worms, nu, config["known"]))
    for nu in config["known_tolerances"]:
        for known in config["known_fractions"]:
            out.append((config["known_worms"], nu, known))
    return list(dict.fromkeys(out))


def run(config, out, fresh=False, progress=True, device="cpu", workers=1, threads=1):
    """Run (or resume) the sweep ``config`` into folder ``out``; returns the store.

    With ``workers > 1`` the fits run in that many processes (``spawn``, ``threads`` torch
    threads each) while this one alone writes the store, record by record as fits finish. Each
    fit's budget is wall clock, so give every worker its own cores: more workers than cores
    would cut every method's work.
    """
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    store = RecordStore(Path(out) / RESULTS_FILE, config, KEY, fresh=fresh)
    todo = []
    # Seed by seed, so that a partial run covers every setting before it repeats any.
    for seed in range(config["seeds"]):
        for worms, nu, known in settings(config):
            for m in config["methods"]:
                if store.get(worms=worms, nu=nu, known=known, seed=seed, method=m) is None:
                    todo.append((worms, nu, known, seed, m))
    bar = tqdm(total=len(todo), desc="fits", unit="fit", disable=not progress)
    if todo:
        bar.set_postfix_str(_describe(todo[0]))
    if workers == 1 or len(todo) <= 1:
        _init_worker(config, device, None)
        fits = map(_fit, todo)
    else:
        ctx = multiprocessing.get_context("spawn")  # safe with torch's threads and with CUDA
        pool = ctx.Pool(workers, _init_worker, (config, device, threads))
        # Ordered, so that the store fills seed by seed as in a serial run.
        fits = pool.imap(_fit, todo)
    try:
        for i, record in enumerate(fits):
            store.add(record)
            bar.update(1)
            if i + 1 < len(todo):
                bar.set_postfix_str(_describe(todo[i + 1]))
    finally:
        if workers > 1 and len(todo) > 1:
            pool.terminate()  # an interrupt stops the fits in flight; the store has the rest
            pool.join()
    bar.close()
    return store


def _describe(task):
    worms, nu, known, seed, method = task
    return f"J={worms} nu={nu:g} known={known:g} seed={seed} {method}"


# One fitting process's state: the sweep, its connectome and the last data set it simulated
# (consecutive fits mostly share one, and each worker then builds it once).
_WORKER = {}


def _init_worker(config, device, threads):
    if threads is not None:
        torch.set_num_threads(threads)
    connectome = load_connectome()
    if config["n"] is not None:
        connectome = connectome.subset(config["n"])
    _WORKER.clear()
    _WORKER.update(config=config, device=device, connectome=connectome, point=(None, None))


def _fit(task):
    """Fit one (worms, nu, known, seed, method) and return its record."""
    worms, nu, known, seed, method = task
    config, device = _WORKER["config"], _WORKER["device"]
    key, point = _WORKER["point"]
    if key != task[:4]:
        point = E.make_point(
            _WORKER["connectome"],
            worms,
            nu,
            known,
            seed,
            steps=config["steps"],
            noise_scale=config["noise_scale"],
            device=device,
        )
        _WORKER["point"] = (task[:4], point)
    result = E.run_method(method, point, config["budget"], seed)
    return {
        "worms": worms,
        "nu": nu,
        "known": known,
        "seed": seed,
        "method": method,
        "n": point.problem.n,
        "candidates": point.candidates,
        "start_accuracy": point.start_accuracy,
        "start_seconds": point.start_seconds,
        "device": str(device),
        **result,
    }


def _mean_se(values):
    v = torch.tensor(values, dtype=torch.float64)
    se = float(v.std() / math.sqrt(v.numel())) if v.numel() > 1 else float("nan")
    return float(v.mean()), se


def _points(config):
    """``(study, worms, nu, known)`` of both studies, in table order."""
    return [
        ("tolerance", w, nu, config["known"])
        for w in config["worms"]
        for nu in config["tolerances"]
    ] + [
        ("known", config["known_worms"], nu, k)
        for nu in config["known_tolerances"]
        for k in config["known_fractions"]
    ]


def summarize(store):
    """Rows ``{study, worms, nu, known, method, candidates, accuracy, se, start, seeds,
    seconds}`` over the seeds stored, for both studies (a shared point appears in both)."""
    config = store.config
    records = list(store.records.values())
    rows = []
    for study, worms, nu, known in _points(config):
        for method in ["start"] + config["methods"]:
            name = config["methods"][0] if method == "start" else method
            chosen = [
                r
                for r in records
                if (r["worms"], r["nu"], r["known"], r["method"]) == (worms, nu, known, name)
            ]
            if not chosen:
                continue
            field = "start_accuracy" if method == "start" else "accuracy"
            acc, se = _mean_se([r[field] for r in chosen])
            rows.append(
                {
                    "study": study,
                    "worms": worms,
                    "nu": nu,
                    "known": known,
                    "method": method,
                    "candidates": _mean_se([r["candidates"] for r in chosen])[0],
                    "accuracy": acc,
                    "se": se,
                    "seeds": len(chosen),
                    "seconds": _mean_se(
                        [r["start_seconds"] if method == "start" else r["seconds"] for r in chosen]
                    )[0],
                    "iterations": None
                    if method == "start"
                    else _mean_se([r["iterations"] for r in chosen])[0],
                }
            )
    return rows


def claim_rows(store):
    """[BP]'s claim, point by point: the best VI method against the best baseline (MCMC or
    MAP), each the method of highest mean accuracy at the point, compared seed by seed.

    Every seed is one simulated data set that both methods were fitted to, so the comparison
    is of the paired differences ``d_s = acc_VI(s) - acc_baseline(s)`` over the seeds where
    both were fitted: their mean and its standard error ``sd(d) / sqrt(k)``, far smaller than
    the two accuracies' own standard errors when the data sets differ more than the methods.
    Rows ``{study, worms, nu, known, candidates, vi, baseline, vi_accuracy,
    baseline_accuracy, difference, se, seeds}``, the accuracies over the paired seeds; a point
    with no VI or no baseline fit has no row.
    """
    config = store.config
    by = {}
    for r in store.records.values():
        by.setdefault((r["worms"], r["nu"], r["known"]), {}).setdefault(r["method"], {})[
            r["seed"]
        ] = r
    rows = []
    for study, worms, nu, known in _points(config):
        fits = by.get((worms, nu, known), {})

        def best(names, fits=fits):
            scored = [(_mean_se([r["accuracy"] for r in fits[m].values()])[0], m) for m in names]
            return max(scored) if scored else (None, None)

        vi = best([m for m in fits if m in VI_METHODS])[1]
        base = best([m for m in fits if m not in VI_METHODS])[1]
        if vi is None or base is None:
            continue
        seeds = sorted(set(fits[vi]) & set(fits[base]))
        vi_acc, base_acc = (
            _mean_se([fits[m][s]["accuracy"] for s in seeds])[0] for m in (vi, base)
        )
        diff, se = _mean_se([fits[vi][s]["accuracy"] - fits[base][s]["accuracy"] for s in seeds])
        rows.append(
            {
                "study": study,
                "worms": worms,
                "nu": nu,
                "known": known,
                "candidates": _mean_se([r["candidates"] for r in fits[vi].values()])[0],
                "vi": vi,
                "baseline": base,
                "vi_accuracy": vi_acc,
                "baseline_accuracy": base_acc,
                "difference": diff,
                "se": se,
                "seeds": len(seeds),
            }
        )
    return rows


def claim_table(rows):
    """Markdown of :func:`claim_rows`, with a verdict per point: *above* or *below* when the
    paired difference is more than two standard errors from 0, else *level*."""
    if not rows:
        return ""
    out = [
        "**The best VI method against the best baseline, seed by seed** (difference of "
        "accuracies on the same data sets: mean ± standard error of the paired differences; "
        "verdict *above* / *below* beyond two standard errors, else *level*)",
        "",
        "| study | J | nu | known | cand. | best VI | best baseline | VI − baseline | seeds "
        "| verdict |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        d, se = r["difference"], r["se"]
        if math.isfinite(se) and d - 2 * se > 0:
            verdict = "above"
        elif math.isfinite(se) and d + 2 * se < 0:
            verdict = "below"
        else:
            verdict = "level"
        cell = f"{d:+.3f} ± {se:.3f}" if math.isfinite(se) else f"{d:+.3f}"
        out.append(
            f"| {r['study']} | {r['worms']} | {r['nu']:g} | {r['known']:g} | "
            f"{r['candidates']:.1f} | {r['vi']} ({r['vi_accuracy']:.3f}) | {r['baseline']} "
            f"({r['baseline_accuracy']:.3f}) | {cell} | {r['seeds']} | {verdict} |"
        )
    return "\n".join(out) + "\n"


def write_csv(rows, path):
    fields = list(rows[0]) if rows else []
    with Path(path).open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        for r in rows:
            w.writerow({k: (f"{v:.4f}" if isinstance(v, float) else v) for k, v in r.items()})


def _cell(r):
    if r is None:
        return ""
    se = r["se"]
    return f"{r['accuracy']:.3f} ± {se:.3f}" if math.isfinite(se) else f"{r['accuracy']:.3f}"


def markdown_tables(rows, config, n):
    """Accuracy tables (mean ± standard error over seeds), one per study and group."""
    methods = ["start"] + config["methods"]
    by = {(r["study"], r["worms"], r["nu"], r["known"], r["method"]): r for r in rows}
    out = [
        f"Accuracy: fraction of the unknown neurons whose label the method's estimate gets "
        f"right (mean ± standard error over seeds; seeds per cell in the CSV). N = {n} "
        f"neurons, T = {config['steps']} "
        f"steps per worm, {config['budget']:g} s of wall clock per method and point after the "
        f"shared graph-matching start (row 'start').",
        "",
    ]
    for worms in config["worms"]:
        out += [
            f"**Tolerance sweep, J = {worms} worm(s), known fraction {config['known']:g}**",
            "",
        ]
        nus = list(config["tolerances"])
        cands = []
        for nu in nus:
            r = by.get(("tolerance", worms, nu, config["known"], methods[0]))
            cands.append(f"{r['candidates']:.1f}" if r else "?")
        out.append(
            "| method | "
            + " | ".join(f"nu = {nu:g} ({c} cand.)" for nu, c in zip(nus, cands))
            + " |"
        )
        out.append("|---|" + "---|" * len(nus))
        for m in methods:
            cells = [_cell(by.get(("tolerance", worms, nu, config["known"], m))) for nu in nus]
            out.append(f"| {m} | " + " | ".join(cells) + " |")
        out.append("")
    for nu in config["known_tolerances"]:
        ks = config["known_fractions"]
        out += [f"**Known-fraction sweep, nu = {nu:g}, J = {config['known_worms']}**", ""]
        out.append("| method | " + " | ".join(f"known = {k:g}" for k in ks) + " |")
        out.append("|---|" + "---|" * len(ks))
        for m in methods:
            cells = [_cell(by.get(("known", config["known_worms"], nu, k, m))) for k in ks]
            out.append(f"| {m} | " + " | ".join(cells) + " |")
        out.append("")
    return "\n".join(out)


def _tolerance_fits(store, worms, method):
    config = store.config
    return [
        r
        for r in store.records.values()
        if r["worms"] == worms
        and r["method"] == method
        and r["known"] == config["known"]
        and r["nu"] in config["tolerances"]
    ]


def _latest(record, t, index, initial):
    """Trace entry ``index`` of ``record``'s latest row at or before ``t`` (``initial``
    before the first)."""
    value = initial
    for row in record["trace"]:
        if row[0] <= t:
            value = row[index]
    return value


def _grid(config):
    return [config["budget"] * f for f in (0.1, 0.25, 0.5, 1.0, 1.5, 2.0)]


def time_rows(store):
    """Accuracy against wall clock: per method and worms, the mean over the tolerance study's
    points of each fit's accuracy at a grid of times up to twice the budget (a fit's latest
    estimate at that time; a fit stops after the step that exceeds the budget, so a slow step
    can take it past the budget)."""
    config = store.config
    rows = []
    for worms in config["worms"]:
        for method in config["methods"]:
            chosen = _tolerance_fits(store, worms, method)
            if not chosen:
                continue
            for t in _grid(config):
                values = [_latest(r, t, 1, r["start_accuracy"]) for r in chosen]
                mean, se = _mean_se(values)
                rows.append(
                    {
                        "worms": worms,
                        "method": method,
                        "seconds": t,
                        "accuracy": mean,
                        "se": se,
                        "fits": len(values),
                    }
                )
    return rows


def spread_rows(store):
    """The posterior's spread against wall clock (:mod:`tutorials.celegans.posterior`): per
    method with a posterior (not MAP) and worms, the mean over the tolerance study's fits
    that recorded it of each fit's latest ``spread`` and ``truth mass`` at the grid of
    :func:`time_rows`. Before a fit's first record its posterior is the start, a point mass:
    spread 0, truth mass the start's accuracy."""
    config = store.config
    rows = []
    for worms in config["worms"]:
        for method in config["methods"]:
            chosen = [
                r
                for r in _tolerance_fits(store, worms, method)
                if r["trace"] and len(r["trace"][0]) > 3 and r["trace"][0][3] is not None
            ]
            if not chosen:
                continue
            for t in _grid(config):
                sp = _mean_se([_latest(r, t, 3, 0.0) for r in chosen])
                tm = _mean_se([_latest(r, t, 4, r["start_accuracy"]) for r in chosen])
                rows.append(
                    {
                        "worms": worms,
                        "method": method,
                        "seconds": t,
                        "spread": sp[0],
                        "spread_se": sp[1],
                        "truth_mass": tm[0],
                        "truth_mass_se": tm[1],
                        "fits": len(chosen),
                    }
                )
    return rows


def spread_table(rows):
    """Markdown of :func:`spread_rows`: ``spread / truth mass`` per cell."""
    if not rows:
        return ""
    times = sorted({r["seconds"] for r in rows})
    out = [
        "**Posterior spread against wall clock** (mean over the tolerance sweep's fits that "
        "recorded it; each cell: spread / truth mass, the posterior's mass off each unknown "
        "neuron's most frequent label and on its true label; VI from 8 draws of the guide, MCMC "
        "from the draws kept so far)",
        "",
        "| J | method | fits | " + " | ".join(f"{t:g} s" for t in times) + " |",
        "|---|---|---|" + "---|" * len(times),
    ]
    keys = list(dict.fromkeys((r["worms"], r["method"]) for r in rows))
    by = {(r["worms"], r["method"], r["seconds"]): r for r in rows}
    for w, m in keys:
        cells = [by[(w, m, t)] for t in times]
        out.append(
            f"| {w} | {m} | {cells[0]['fits']} | "
            + " | ".join(f"{c['spread']:.3f} / {c['truth_mass']:.3f}" for c in cells)
            + " |"
        )
    return "\n".join(out) + "\n"


def time_table(rows):
    if not rows:
        return ""
    times = sorted({r["seconds"] for r in rows})
    out = [
        "**Accuracy against wall clock** (mean ± standard error over the tolerance sweep's "
        "fits; each fit's latest estimate at that time)",
        "",
        "| J | method | " + " | ".join(f"{t:g} s" for t in times) + " |",
        "|---|---|" + "---|" * len(times),
    ]
    keys = list(dict.fromkeys((r["worms"], r["method"]) for r in rows))
    by = {(r["worms"], r["method"], r["seconds"]): r for r in rows}
    for w, m in keys:
        out.append(f"| {w} | {m} | " + " | ".join(_cell(by.get((w, m, t))) for t in times) + " |")
    return "\n".join(out) + "\n"
