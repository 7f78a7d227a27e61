"""Which prior goes with which guide: the grid search's best configuration for every pair of a
variational family and a prior, as a markdown table (``pairings.md``, shown in
docs/choosing.rst)."""

import json

#: The guide each method fits, as the docs name it.
GUIDES = {
    "stick-breaking": "StickBreakingBirkhoff",
    "rounding": "RoundingBirkhoff",
    "gumbel-sinkhorn": "GumbelSinkhorn",
}


def prior_label(method, hyper):
    """The prior a grid configuration pairs its guide with (see ``experiment._relaxation``)."""
    if method == "gumbel-sinkhorn":
        return f"GumbelSinkhorn(0, tau={hyper['prior_temperature']:g})"
    if hyper.get("prior", "rounding") == "flat":
        return "FlatBirkhoff"
    return f"RoundingPrior(eta={hyper['prior_eta']:g})"


def pairings_markdown(rows, sigmas, reps, command):
    """For every (guide, prior) pair in ``rows`` (dicts with ``method``, ``hyper`` (JSON),
    ``sigma=<s>`` and ``average``, as ``grid_search.csv`` holds them), its configuration with
    the lowest average distance over ``sigmas``, best pair of each guide first."""
    best = {}
    for r in rows:
        if r["method"] not in GUIDES:
            continue
        hyper = json.loads(r["hyper"])
        key = (r["method"], prior_label(r["method"], hyper))
        average = float(r["average"])
        if key not in best or average < best[key][0]:
            best[key] = (average, hyper, [float(r[f"sigma={s:g}"]) for s in sigmas])
    order = sorted(best, key=lambda k: (list(GUIDES).index(k[0]), best[k][0]))
    head = "| guide | prior | " + " | ".join(f"sigma = {s:g}" for s in sigmas) + " | average |"
    lines = [
        "Hellinger distance between the exact posterior and the guide's rounded samples "
        f"(1,000 per fit) on the six-item matching problem, mean over {reps} repetitions per "
        "sigma (the grid search's, not the evaluation's); for every pair of a guide and a "
        "prior, the best of the searched guide settings (temperature, scale bounds), given in "
        "the last column. The GumbelSinkhorn rows pair a GumbelSinkhorn guide with a "
        "GumbelSinkhorn prior of the given temperature (the ELBO in score space).",
        "",
        head + " guide settings |",
        "|---|---|" + "---|" * (len(sigmas) + 2),
    ]
    for method, prior in order:
        average, hyper, per_sigma = best[(method, prior)]
        shown = {k: v for k, v in hyper.items() if k not in ("prior", "prior_eta")}
        shown.pop("prior_temperature", None)
        cells = " | ".join(f"{d:.2f}" for d in per_sigma)
        lines.append(
            f"| {GUIDES[method]} | {prior} | {cells} | {average:.2f} | "
            f"{json.dumps(shown).replace('|', '/')} |"
        )
    lines += ["", f"Command: `{command}` (every configuration in grid_search.csv)."]
    return "\n".join(lines) + "\n"
