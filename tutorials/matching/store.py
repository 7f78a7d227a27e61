"""Per-repetition results of the matching experiment, kept in one JSON file.

The file is rewritten atomically (a temporary file, then ``os.replace``) after every batch of
repetitions, so an interrupted run loses at most the batch in flight and a rerun of the same
command resumes where it stopped. A file written with other settings, or one that does not
parse, is refused with an error saying what to do, never mixed in silently.
"""

import json
import math
import os
from pathlib import Path

FORMAT = 1


class ResultsFileError(ValueError):
    """The results file is corrupt or belongs to a run with other settings."""


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
        if data.get("config") != self.config:
            old = data.get("config") or {}
            diff = sorted(
                k for k in set(old) | set(self.config) if old.get(k) != self.config.get(k)
            )
            raise ResultsFileError(
                f"{self.path} was written with other settings (differing: {', '.join(diff)}); "
                f"pass the same settings to resume it, --fresh to discard it, or --out to write "
                f"elsewhere"
            )
        records = data.get("records")
        if not isinstance(records, list):
            raise ResultsFileError(f"{self.path} has no list of records; delete it or --fresh")
        for r in records:
            ok = (
                isinstance(r, dict)
                and r.get("method") in self.config["methods"]
                and r.get("sigma") in self.config["sigmas"]
                and isinstance(r.get("rep"), int)
                and isinstance(r.get("distance"), (int, float))
                and 0 <= r["distance"] <= 1
            )
            if not ok:
                raise ResultsFileError(
                    f"{self.path} holds a malformed record {r!r}; delete it or pass --fresh"
                )
        self.records = records
        self.examples = data.get("examples", {})

    def done(self, method, sigma):
        """Repetitions already finished for ``method`` at ``sigma``."""
        return {r["rep"] for r in self.records if r["method"] == method and r["sigma"] == sigma}

    def add(self, records, examples=None):
        """Append finished records (and example pmfs) and rewrite the file atomically."""
        for r in records:
            if not (0 <= r["distance"] <= 1) or math.isnan(r["distance"]):
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
