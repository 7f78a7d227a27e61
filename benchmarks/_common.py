"""Shared helpers of the benchmark sections: timing, peak memory, machine facts, tables."""

import importlib
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import time
from importlib import metadata

import torch

#: glibc returns freed blocks of at least this many bytes to the OS at once (and never raises
#: the threshold), so the resident set size falls back after each measured call and the next
#: call's peak is its own. Set in the environment of the measuring subprocess.
MMAP_THRESHOLD = 65536


def timed(fn):
    """``(fn(), seconds)``."""
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def median_time(fn, min_total=0.3, max_repeats=5):
    """Median wall time of ``fn()`` over repeats: at least one, more while the total is under
    ``min_total`` seconds (at most ``max_repeats``). The first call is a warm-up if cheap."""
    _, first = timed(fn)
    if first > min_total:
        return first
    times = []
    while len(times) < max_repeats and sum(times) < min_total:
        times.append(timed(fn)[1])
    return statistics.median(times)


def version(package):
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def cpu_model():
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        out = ""
    for line in out.splitlines():
        if line.startswith("Model name:"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def cores():
    """The CPU cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


def machine_lines():
    """Markdown bullet lines: CPU, cores, OS and the versions of everything measured."""
    versions = ", ".join(
        f"{name} {version(pkg)}"
        for name, pkg in [
            ("torch", "torch"),
            ("pyro-ppl", "pyro-ppl"),
            ("numpy", "numpy"),
            ("scipy", "scipy"),
            ("POT", "pot"),
            ("lapx", "lapx"),
        ]
    )
    return [
        f"- Machine: {cpu_model()}, {cores()} cores ({platform.system()} {platform.release()}, "
        f"{platform.machine()})",
        f"- Python {platform.python_version()}; {versions}",
        f"- torch threads: {torch.get_num_threads()}; float32 unless stated",
    ]


def load_average():
    try:
        return "{:.2f} {:.2f} {:.2f}".format(*os.getloadavg())
    except OSError:
        return "unknown"


def doc_markdown(doc):
    """A section module's docstring, after its first paragraph, as markdown."""
    text = doc.split("\n\n", 1)[1].strip()
    text = re.sub(r":\w+:`~?([^`]+)`", r"``\1``", text)
    return text.replace("``", "`")


def table(header, rows):
    """A markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _status_mib():
    """``(VmRSS, VmHWM)`` of this process in MiB, from ``/proc/self/status``."""
    values = {}
    with open("/proc/self/status") as f:
        for line in f:
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                values[key] = int(rest.split()[0]) / 1024
    return values["VmRSS"], values["VmHWM"]


def measure_peak(run):
    """``(seconds, peak MiB)`` of one call ``run()``: the resident-set high-water mark during the
    call minus the resident set just before it. The high-water mark is reset by writing ``5`` to
    ``/proc/self/clear_refs`` (Linux >= 4.0)."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    before, _ = _status_mib()
    _, seconds = timed(run)
    _, peak = _status_mib()
    return seconds, max(peak - before, 0.0)


def measured_in_subprocess(target, configs, repeats=2, timeout=600):
    """Time and peak memory of ``target(**config)()`` for each config, in one fresh process.

    ``target`` is ``"module:function"``; the function sets up (inputs, warm-up; not measured)
    and returns the callable to measure. The child runs with ``MALLOC_MMAP_THRESHOLD_`` set so
    that memory freed after one configuration goes back to the OS before the next. The first
    call gives the peak memory; the time is the median of it and up to ``repeats`` more calls
    (none if the first took over 2 s). Returns a list of ``{"seconds", "peak_mib"}``.
    """
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_=str(MMAP_THRESHOLD))
    spec = json.dumps(
        {
            "target": target,
            "configs": configs,
            "repeats": repeats,
            "threads": torch.get_num_threads(),
        }
    )
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks._common", spec],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"measuring {target} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _child(spec):
    torch.set_num_threads(spec["threads"])
    module, function = spec["target"].split(":")
    setup = getattr(importlib.import_module(module), function)
    results = []
    for config in spec["configs"]:
        run = setup(**config)
        seconds, peak = measure_peak(run)
        times = [seconds]
        if seconds < 2:
            times += [timed(run)[1] for _ in range(spec["repeats"])]
        results.append({"seconds": statistics.median(times), "peak_mib": peak})
        del run
    print(json.dumps(results))


def fastest_peer_verdict(t_ours, ours_reached, peers, target):
    """The target line's verdict against the fastest peer.

    ``peers`` maps a name to ``(seconds, reached)``: its time, and whether it reached the
    tolerance within its cap. A peer that stopped at its cap unconverged would have taken
    longer, so ``seconds / t_ours`` is a lower bound of its ratio (marked ``>``). The verdict
    is the smallest ratio over all peers: "met" when it is at least ``target`` (a lower bound
    at least ``target`` decides it too), "MISSED" when a peer that reached the tolerance is
    below it, "undecided" when only a capped peer is below it.
    """
    if not ours_reached:
        return "(MISSED: ours did not reach the tolerance)"
    if not peers:
        return "(undecided: no peer ran)"
    reached = {k: t for k, (t, ok) in peers.items() if ok}
    if reached and min(reached.values()) < target * t_ours:
        name = min(reached, key=reached.get)
        ratio = reached[name] / t_ours
        short = f"{target / ratio:.1f}x short of {target:g}x"
        return f"fastest peer {name}: {ratio:.1f}x (MISSED: {short})"
    name = min(peers, key=lambda k: peers[k][0])
    seconds, reached_ = peers[name]
    ratio = seconds / t_ours
    what = "fastest peer" if reached_ else "fastest peer (stopped at its cap unconverged)"
    if ratio >= target:
        return f"{what} {name}: {'' if reached_ else '>'}{ratio:.1f}x (met)"
    return f"{what} {name}: >{ratio:.1f}x (undecided: it hit its cap first)"


if __name__ == "__main__":
    _child(json.loads(sys.argv[1]))
