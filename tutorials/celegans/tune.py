"""The VI hyper-parameters at N = 279: each VI method's starting values (:data:`BASE_HYPER`)
against one change at a time, then a few combinations, on held-out seeds (not those of the
sweeps), under the sweep's budget.

    python -m tutorials.celegans.tune                 # J = 1 and 5, nu = 0.02, 30 s a fit
    python -m tutorials.celegans.tune --worms 5 --budget 10 --seeds 100

Every fit is stored at once (``results/tuning/points-J<J>.json``, one store per number of
worms so that two ``J`` can run side by side; resumable like the sweeps;
``--report`` rewrites the table from every store in the folder);
``results/tuning/tables.md`` gives, per method and setting, the accuracy of the posterior mode
at the end of the budget, the VI steps it bought and the final ELBO, beside the start's and
MAP's accuracy on the same data.
"""

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import torch  # noqa: E402
from tqdm.auto import tqdm  # noqa: E402

from tutorials.celegans import experiment as E  # noqa: E402
from tutorials.celegans.data import load_connectome  # noqa: E402
from tutorials.celegans.model import VI_METHODS, fit_vi  # noqa: E402
from tutorials.checkpoint import CheckpointError, RecordStore  # noqa: E402

RESULTS = Path(__file__).parent / "results" / "tuning"
KEY = ("worms", "nu", "seed", "method", "setting")
#: Neurons of the whole connectome (:func:`~tutorials.celegans.data.load_connectome`).
FULL_N = 279

#: The hyper-parameters this study starts from (its "default" row): ``DEFAULT_HYPER`` as it was
#: before the study, which then chose today's ``DEFAULT_HYPER`` from its table (docs page).
BASE_HYPER = {
    "rounding": {
        "temperature": 0.2,
        "prior_eta": 0.3,
        "scale": [0.05, 0.3],
        "lr": 0.05,
        "start_strength": 2.0,
    },
    "gumbel-sinkhorn": {
        "temperature": 0.2,
        "prior_temperature": 1.0,
        "lr": 0.05,
        "start_strength": 2.0,
        "n_iters": 20,
    },
    "naive": {"temperature": 0.2, "prior_temperature": 1.0, "lr": 0.05, "start_strength": 2.0},
}
#: Steps of the annealed setting's schedule (about what 30 s buys at J = 5, a sixth at J = 1).
ANNEAL_STEPS = 100
#: Changes from :data:`BASE_HYPER` (``"default"``: none).
CHANGES = {
    "default": {},
    "lr 0.01": {"lr": 0.01},
    "lr 0.2": {"lr": 0.2},
    "temperature 0.1": {"temperature": 0.1},
    "temperature 0.5": {"temperature": 0.5},
    "start strength 5": {"start_strength": 5.0},
    "start strength 10": {"start_strength": 10.0},
    # The rounding guide's scale starts at the top of its interval: 0.3 by default.
    "scale in [0.01, 0.1]": {"scale": [0.01, 0.1]},
    # From temperature 0.9 (rounding's must be below 1) down to the default over the first
    # ANNEAL_STEPS steps (fit_vi's schedule is a fraction of its step count, E.MAX_STEPS here).
    "anneal 0.9 -> default": {"anneal_from": 0.9, "anneal_fraction": ANNEAL_STEPS / E.MAX_STEPS},
    # A second round: the single changes that helped, combined or pushed further.
    "scale in [0.005, 0.05]": {"scale": [0.005, 0.05]},
    "scale in [0.01, 0.1], start strength 5": {"scale": [0.01, 0.1], "start_strength": 5.0},
    "start strength 5, temperature 0.5": {"start_strength": 5.0, "temperature": 0.5},
    "start strength 5, lr 0.01": {"start_strength": 5.0, "lr": 0.01},
}


def settings_for(method, changes):
    """The (name, hyper-parameters) pairs tried for ``method``; a change of a key the method
    does not have is skipped."""
    out = []
    for name, change in changes.items():
        if name.startswith("anneal"):
            out.append((name, change))
        elif all(k in BASE_HYPER[method] for k in change):
            out.append((name, change))
    return out


def store_path(out, worms):
    """One store per number of worms, so that runs for different ``J`` can go side by side."""
    return Path(out) / f"points-J{worms}.json"


def run(
    worms,
    nus,
    seeds,
    budget,
    out,
    fresh=False,
    progress=True,
    methods=VI_METHODS,
    n=None,
    only=None,
):
    """Fit (or resume) ``J = worms`` (an int): MAP, then every method's settings, per point
    (``n``: a connected subset of that many neurons, for tests; default all; ``only``: these
    names of :data:`CHANGES`, default all)."""
    changes = CHANGES if only is None else {k: CHANGES[k] for k in only}
    config = {"budget": budget, "known": 0.1, "steps": 40, "noise_scale": 0.5}
    if n is not None:
        config["n"] = n
    store = RecordStore(store_path(out, worms), config, KEY, fresh=fresh)
    connectome = load_connectome()
    if n is not None:
        connectome = connectome.subset(n)
    todo = []
    for seed in seeds:
        for nu in nus:
            jobs = [("map", "-")] + [
                (m, name) for m in methods for name, _ in settings_for(m, changes)
            ]
            left = [
                (m, s)
                for m, s in jobs
                if store.get(worms=worms, nu=nu, seed=seed, method=m, setting=s) is None
            ]
            if left:
                todo.append((worms, nu, seed, left))
    bar = tqdm(total=sum(len(t[-1]) for t in todo), desc="fits", unit="fit", disable=not progress)
    warmed = set()  # each method's first steps in a process pay one-off costs: not timed
    for j, nu, seed, jobs in todo:
        point = E.make_point(connectome, j, nu, config["known"], seed)
        for method in {m for m, _ in jobs if m != "map"} - warmed:
            fit_vi(method, point.problem, 2, seed, start=point.start)
            warmed.add(method)
        for method, name in jobs:
            bar.set_postfix_str(f"J={j} nu={nu:g} seed={seed} {method} {name}")
            begin = time.perf_counter()
            if method == "map":
                result = E.run_method("map", point, budget, seed)
                acc, steps, elbo = result["accuracy"], result["iterations"], None
            else:
                change = CHANGES[name]
                fit = fit_vi(
                    method,
                    point.problem,
                    E.MAX_STEPS,
                    seed,
                    hyper={**BASE_HYPER[method], **change},
                    start=point.start,
                    truth=point.truth,
                    known=point.known,
                    every=5,
                    time_budget=budget,
                )
                acc = fit.accuracy[-1]
                steps, elbo = fit.steps, fit.elbo[-1]
            store.add(
                {
                    "worms": j,
                    "nu": nu,
                    "seed": seed,
                    "method": method,
                    "setting": name,
                    "accuracy": acc,
                    "steps": steps,
                    "elbo": elbo,
                    "seconds": time.perf_counter() - begin,
                    "start_accuracy": point.start_accuracy,
                    "candidates": point.candidates,
                }
            )
            bar.update(1)
    bar.close()
    return store


def table(stores):
    """Markdown: per (J, nu), every method and setting, one accuracy column per seed (the seeds'
    data differ, so only a row's cells at the same seed compare), steps and final ELBO."""
    records = [r for store in stores for r in store.records.values()]
    budget = stores[0].config["budget"]
    n = stores[0].config.get("n", FULL_N)
    lines = [
        f"Accuracy of the posterior mode on the unknown neurons after {budget:g} s of wall clock, "
        f"per held-out seed (not the sweeps' seeds; '-': not run at that seed), N = {n}, known "
        "fraction 0.1, beside the VI steps the budget bought and the final ELBO (means over the "
        "seeds run). Settings are changes from `BASE_HYPER`, the defaults before this study.",
        "",
    ]
    groups = sorted({(r["worms"], r["nu"]) for r in records})
    for j, nu in groups:
        rs = [r for r in records if r["worms"] == j and r["nu"] == nu]
        seeds = sorted({r["seed"] for r in rs})
        cand = sum(r["candidates"] for r in rs) / len(rs)
        head = " | ".join(f"seed {s}" for s in seeds)
        lines += [
            f"**J = {j}, nu = {nu:g} (about {cand:.0f} candidates per neuron)**",
            "",
            f"| method | setting | {head} | steps | final ELBO |",
            "|---|---|" + "---|" * len(seeds) + "---|---|",
        ]
        starts = {r["seed"]: r["start_accuracy"] for r in rs}
        cells = " | ".join(f"{starts[s]:.3f}" if s in starts else "-" for s in seeds)
        lines.append(f"| start | - | {cells} | - | - |")
        order = ["map"] + list(VI_METHODS)
        keys = sorted(
            {(r["method"], r["setting"]) for r in rs},
            key=lambda k: (order.index(k[0]), list(CHANGES).index(k[1]) if k[1] in CHANGES else -1),
        )
        for method, name in keys:
            sel = {r["seed"]: r for r in rs if r["method"] == method and r["setting"] == name}
            cells = " | ".join(f"{sel[s]['accuracy']:.3f}" if s in sel else "-" for s in seeds)
            steps = sum(r["steps"] for r in sel.values()) / len(sel)
            elbos = [r["elbo"] for r in sel.values() if r["elbo"] is not None]
            elbo = f"{sum(elbos) / len(elbos):,.0f}" if elbos else "-"
            lines.append(f"| {method} | {name} | {cells} | {steps:.0f} | {elbo} |")
        lines.append("")
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m tutorials.celegans.tune", description=__doc__)
    p.add_argument("--worms", type=int, nargs="+", default=[1, 5], help="each its own store")
    p.add_argument("--nu", type=float, nargs="+", default=[0.02])
    p.add_argument("--seeds", type=int, nargs="+", default=[100])
    p.add_argument("--budget", type=float, default=30.0)
    p.add_argument("--methods", nargs="+", choices=VI_METHODS, default=list(VI_METHODS))
    p.add_argument("--settings", nargs="+", choices=list(CHANGES), help="default: all")
    p.add_argument("--out", default=str(RESULTS))
    p.add_argument("--fresh", action="store_true")
    p.add_argument("--report", action="store_true", help="only rewrite tables.md")
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    if not (math.isfinite(args.budget) and args.budget > 0):
        p.error(f"--budget must be a positive number of seconds, got {args.budget}")
    try:
        if args.report:  # every store in the folder
            stores = []
            for path in sorted(Path(args.out).glob("points-J*.json")):
                config = json.loads(path.read_text())["config"]
                stores.append(RecordStore(path, config, KEY))
        else:
            stores = [
                run(
                    j,
                    args.nu,
                    args.seeds,
                    args.budget,
                    args.out,
                    fresh=args.fresh,
                    progress=not args.no_progress,
                    methods=args.methods,
                    only=args.settings,
                )
                for j in args.worms
            ]
    except (CheckpointError, json.JSONDecodeError, KeyError) as e:
        raise SystemExit(f"error: {e}") from None
    if not stores:
        raise SystemExit(f"error: no results in {args.out}; run without --report first")
    text = table(stores)
    Path(args.out, "tables.md").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
