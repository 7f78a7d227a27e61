"""Per-repetition results of the matching experiment, kept in one JSON file.

The file is rewritten atomically (a temporary file, then ``os.replace``) after every batch of
repetitions, so an interrupted run loses at most the batch in flight and a rerun of the same
command resumes where it stopped. A file written with other settings, or one that does not
parse, is refused with an error saying what to do, never mixed in silently; the one exception
is a change of some methods' hyper-parameters alone, after which those methods' repetitions
are dropped (and refitted by the run) and the others' kept, with a message that says so.
"""

import json
import os
import sys
from pathlib import Path

FORMAT = 1


class ResultsFileError(ValueError):
    """The results file is corrupt or belongs to a run with other settings."""


def _is_distance(d):
    """A Hellinger distance: a number in [0, 1] (not nan)."""
    return isinstance(d, (int, float)) and not isinstance(d, bool) and 0 <= d <= 1


class ResultsStore:
    """Records ``{"method", "sigma", "rep", "distance", "seconds"}`` plus example pmfs."""

    def __init__(self, path, config, fresh=False):
        self.path = Path(path)
        self.config = json.loads(json.dumps(config))  # normalise tuples to lists
        self.records = []
        self.examples = {}
        if self.path.exists() and not fresh:
            self._load()

    def _load(self):
        try:
            data = json.loads(self.path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ResultsFileError(
                f"{self.path} is not a valid results file ({e}); it is corrupt or not ours. "
                f"Delete it or pass --fresh to start over."
            ) from e
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise ResultsFileError(
                f"{self.path} is not a results file of this tutorial (format {FORMAT}); delete "
                f"it or pass --fresh"
            )
        old = data.get("config") or {}
        diff = sorted(k for k in set(old) | set(self.config) if old.get(k) != self.config.get(k))
        changed = []
        if diff == ["hyper"] and isinstance(old.get("hyper"), dict):
            # Only some methods' hyper-parameters changed: those methods are refitted, the
            # other methods' repetitions are still results of these settings and are kept.
            new_hyper = self.config["hyper"]
            changed = sorted(
                m
                for m in set(old["hyper"]) | set(new_hyper)
                if old["hyper"].get(m) != new_hyper.get(m)
            )
        elif diff:
            raise ResultsFileError(
                f"{self.path} was written with other settings (differing: {', '.join(diff)}); "
                f"pass the same settings to resume it, --fresh to discard it, or --out to write "
                f"elsewhere"
            )
        records = data.get("records")
        if not isinstance(records, list):
            raise ResultsFileError(f"{self.path} has no list of records; delete it or --fresh")
        examples = data.get("examples", {})
        if changed:
            kept = [r for r in records if not (isinstance(r, dict) and r.get("method") in changed)]
            print(
                f"{self.path}: the hyper-parameters of {', '.join(changed)} changed: "
                f"their {len(records) - len(kept)} stored repetitions are dropped and "
                f"refitted; the other methods' {len(kept)} are kept",
                file=sys.stderr,
            )
            records = kept
            examples = {k: v for k, v in examples.items() if k.split("/", 1)[-1] not in changed}
        for r in records:
            if not self._valid(r):
                raise ResultsFileError(
                    f"{self.path} holds a malformed record {r!r}; delete it or pass --fresh"
                )
        self.records = records
        self.examples = examples

    def _valid(self, r):
        """Whether ``r``, read from the file, is a record of this run."""
        return (
            isinstance(r, dict)
            and r.get("method") in self.config["methods"]
            and r.get("sigma") in self.config["sigmas"]
            and isinstance(r.get("rep"), int)
            and _is_distance(r.get("distance"))
        )

    def done(self, method, sigma):
        """Repetitions already finished for ``method`` at ``sigma``."""
        return {r["rep"] for r in self.records if r["method"] == method and r["sigma"] == sigma}

    def add(self, records, examples=None):
        """Append finished records (and example pmfs) and rewrite the file atomically."""
        for r in records:
            if not _is_distance(r["distance"]):
                raise ValueError(f"refusing to store a distance outside [0, 1]: {r!r}")
        self.records.extend(records)
        self.examples.update(examples or {})
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        payload = {
            "format": FORMAT,
            "config": self.config,
            "records": self.records,
            "examples": self.examples,
        }
        tmp.write_text(json.dumps(payload))
        os.replace(tmp, self.path)


def hyper_key(hyper):
    """A configuration's hyper-parameters as one string, whatever the order of their keys."""
    return json.dumps(hyper, sort_keys=True)


class GridSearchStore(ResultsStore):
    """Results of the hyper-parameter search, in a file handled as :class:`ResultsStore`'s:
    records ``{"method", "hyper", "sigma", "distance"}``, the mean distance of one configuration
    at one sigma over the search's repetitions, each stored as soon as it is found.

    The settings (``config``) name no methods and no grid: a search of some methods, or of a
    grid that has grown, reuses every configuration already stored with the same settings."""

    def _valid(self, r):
        return (
            isinstance(r, dict)
            and isinstance(r.get("method"), str)
            and isinstance(r.get("hyper"), dict)
            and r.get("sigma") in self.config["sigmas"]
            and _is_distance(r.get("distance"))
        )

    def mean(self, method, hyper, sigma):
        """The stored mean distance of ``(method, hyper)`` at ``sigma``, or None."""
        key = hyper_key(hyper)
        for r in self.records:
            if r["method"] == method and r["sigma"] == sigma and hyper_key(r["hyper"]) == key:
                return r["distance"]
        return None
