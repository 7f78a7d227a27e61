"""Run every benchmark side by side and write ``benchmarks/RESULTS.md``.

    python -m benchmarks                      # full run (about 10 minutes on 2 cores)
    python -m benchmarks --quick              # tiny sizes, seconds (CI smoke run)
    python -m benchmarks --only matching svi  # some sections
    python -m benchmarks --full-tutorial      # also time the full matching tutorial (~7 min)
    python -m benchmarks --only peers --threads 1 --out benchmarks/RESULTS-peers.md  # Sinkhorn
    python -m benchmarks --only peers_matching --threads 1 \
        --out benchmarks/RESULTS-peers-matching.md  # matching against assignment solvers
    python -m benchmarks --only peers_backward --threads 1 \
        --out benchmarks/RESULTS-peers-backward.md  # forward plus backward against peers

The quick mode writes to a temporary file unless ``--out`` is given, so that it never
overwrites the committed results. POT is optional: ``pip install -e ".[bench]"``; lapx (and its
module ``lap``) is a dependency of the library. A section whose peer is missing says "not
installed". The other peers of the ``peers`` sections (pygmtools, torch-linear-assignment,
ott-jax) are the ``peers`` extra.
"""

import argparse
import os
import re
import shlex
import sys
import tempfile
import time
from pathlib import Path

import torch

from benchmarks import (
    exact_posterior,
    matching,
    mcmc,
    partial,
    peers,
    peers_backward,
    peers_matching,
    sinkhorn_backward,
    sinkhorn_forward,
    svi,
)
from benchmarks._common import load_average, machine_lines

SECTIONS = {
    "sinkhorn_forward": ("Sinkhorn forward to marginal error 1e-3", sinkhorn_forward),
    "sinkhorn_backward": ("Sinkhorn backward: unrolled vs implicit", sinkhorn_backward),
    "matching": ("Matching (linear assignment)", matching),
    "exact_posterior": ("exact_posterior", exact_posterior),
    "svi": ("SVI on the matching model", svi),
    "mcmc": ("MCMC over permutation sites (PermutationKernel)", mcmc),
    "partial": ("Partial matchings: rectangular and dustbin Sinkhorn, matching", partial),
    "peers_matching": ("Peers at scale: matching", peers_matching),
    "peers": ("Peers at scale: Sinkhorn forward", peers),
    "peers_backward": ("Peers at scale: Sinkhorn forward plus backward", peers_backward),
}
DEFAULT_OUT = Path(__file__).with_name("RESULTS.md")


def targets_summary(parts):
    """The target lines of every section (those saying met, MISSED or undecided)."""
    lines = ["## Targets at a glance", ""]
    for part in parts:
        title = part.splitlines()[0].removeprefix("## ")
        for line in part.splitlines():
            if line.startswith("- ") and re.search(r"\b(met|MISSED|undecided)\b", line):
                lines.append(f"- {title}: {line[2:]}")
    return "\n".join(lines)


def parse_args(argv):
    p = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--quick", action="store_true", help="tiny sizes (CI smoke run)")
    p.add_argument("--out", default=None, help=f"markdown file (default {DEFAULT_OUT})")
    p.add_argument("--only", nargs="+", choices=list(SECTIONS), help="run only these sections")
    p.add_argument(
        "--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)"
    )
    p.add_argument("--note", default=None, help="a remark to print under the machine facts")
    p.add_argument(
        "--full-tutorial",
        action="store_true",
        help="also run python -m tutorials.matching --reps 200 and record its wall time",
    )
    args = p.parse_args(argv)
    if args.threads is not None and args.threads < 1:
        p.error("--threads must be at least 1 (leave it out for torch's default)")
    return args


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    default_threads = torch.get_num_threads()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    if args.out:
        out = Path(args.out)
    elif args.quick:
        out = Path(tempfile.gettempdir()) / "pyro_permutations_benchmarks_quick.md"
    else:
        out = DEFAULT_OUT
    command = shlex.join(["python", "-m", "benchmarks", *argv])
    load_before = load_average()
    start = time.perf_counter()
    parts = []
    for name in args.only or SECTIONS:
        title, module = SECTIONS[name]
        print(f"## {title}", flush=True)
        kwargs = {"full_tutorial": args.full_tutorial} if name == "svi" else {}
        section_start = time.perf_counter()
        text = module.run(args.quick, log=lambda line: print(line, flush=True), **kwargs)
        seconds = time.perf_counter() - section_start
        parts.append(
            f"## {title}\n\n{text}\n\n(Section wall time {seconds:.0f} s; load average after "
            f"it {load_average()}.)"
        )
    total = time.perf_counter() - start
    mode = "quick mode: tiny sizes, not results" if args.quick else "full run"
    header = [
        "# Benchmark results",
        "",
        f"Written by `{command}` ({mode}) on {time.strftime('%Y-%m-%d %H:%M %Z')}, in "
        f"{total:.0f} s.",
        "",
        *machine_lines(),
        f"- Load average (1, 5, 15 min) before the run: {load_before}; after: {load_average()}"
        f" ({os.cpu_count()} CPUs). A load above about 1 means other processes shared the cores "
        "and the times are inflated by them.",
    ]
    if args.threads is not None:
        header.append(
            f"- torch threads set to {args.threads} by `--threads` (default here "
            f"{default_threads})."
        )
    if args.note:
        header.append(f"- Note: {args.note}")
    header += ["", targets_summary(parts), ""]
    out.write_text("\n".join(header) + "\n" + "\n\n".join(parts) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
