"""Trained models of the network tutorials (sorting, jigsaw, digit-to-digit), one file per
setting, so that evaluation and interrupted runs do not retrain; and :class:`RecordStore`, the
finished points of a sweep (the C. elegans tutorial), so that a rerun resumes.

Each file holds ``{"format", "config", "state_dict", "train_seconds", "final_loss", "device"}``
and is written atomically (a temporary file, then ``os.replace``). A file written with other
settings, or one that does not load, is refused with an error saying what to do, never reused
silently.
"""

import json
import os
from pathlib import Path

import torch

FORMAT = 1


class CheckpointError(ValueError):
    """The checkpoint is corrupt or belongs to a run with other settings."""


def save_checkpoint(path, config, model, train_seconds, final_loss, device):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "format": FORMAT,
        "config": dict(config),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "train_seconds": float(train_seconds),
        "final_loss": float(final_loss),
        "device": str(device),
    }
    tmp = path.with_name(path.name + ".tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)


def load_checkpoint(path, config, model):
    """Load the weights at ``path`` into ``model`` if the file was written with ``config``.

    :returns: the stored ``(train_seconds, final_loss)``.
    :raises CheckpointError: if the file does not load, is not ours, or has other settings.
    """
    path = Path(path)
    advice = "delete it, pass --fresh to retrain, or --out to write elsewhere"
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many types for a damaged file
        raise CheckpointError(
            f"{path} is not a readable checkpoint ({type(e).__name__}: {e}); it is corrupt or "
            f"not ours: {advice}"
        ) from e
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise CheckpointError(
            f"{path} is not a checkpoint of the network tutorials (format {FORMAT}): {advice}"
        )
    old = data.get("config")
    if old != dict(config):
        old = old if isinstance(old, dict) else {}
        diff = sorted(k for k in set(old) | set(config) if old.get(k) != config.get(k))
        raise CheckpointError(
            f"{path} was trained with other settings (differing: {', '.join(diff)}); pass the "
            f"same settings to reuse it, or {advice}"
        )
    try:
        model.load_state_dict(data["state_dict"])
        seconds, loss = float(data["train_seconds"]), float(data["final_loss"])
    except (KeyError, TypeError, ValueError, RuntimeError) as e:
        raise CheckpointError(f"{path} holds malformed weights ({e}): {advice}") from e
    return seconds, loss


class RecordStore:
    """Finished points of a sweep in one JSON file ``{"format", "config", "records"}``, each
    record a dict identified by its values at ``key_fields``. :meth:`add` rewrites the file
    atomically (a temporary file, then ``os.replace``) after every point, so an interrupted run
    loses at most the point in flight and the same command resumes.

    :raises CheckpointError: if the file does not parse, is not a record store, was written
        with another ``config``, or holds a record without every key field.

    Example::

        >>> import tempfile
        >>> path = Path(tempfile.mkdtemp()) / "points.json"
        >>> store = RecordStore(path, {"seeds": 2}, ("seed",))
        >>> store.add({"seed": 0, "accuracy": 0.9})
        >>> RecordStore(path, {"seeds": 2}, ("seed",)).get(seed=0)["accuracy"]
        0.9
    """

    def __init__(self, path, config, key_fields, fresh=False):
        self.path = Path(path)
        self.config = json.loads(json.dumps(config))  # tuples become lists, as when read back
        self.key_fields = tuple(key_fields)
        self.records = {}
        if self.path.exists() and not fresh:
            self._load()

    def _key(self, record):
        return json.dumps([record[f] for f in self.key_fields])

    def _load(self):
        advice = "delete it, pass --fresh to start over, or --out to write elsewhere"
        try:
            data = json.loads(self.path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise CheckpointError(
                f"{self.path} is not a readable results file ({type(e).__name__}: {e}); it is "
                f"corrupt or not ours: {advice}"
            ) from e
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise CheckpointError(f"{self.path} is not a results file (format {FORMAT}): {advice}")
        old = data.get("config")
        if old != self.config:
            old = old if isinstance(old, dict) else {}
            diff = sorted(
                k for k in set(old) | set(self.config) if old.get(k) != self.config.get(k)
            )
            raise CheckpointError(
                f"{self.path} was written with other settings (differing: {', '.join(diff)}); "
                f"pass the same settings to resume it, or {advice}"
            )
        records = data.get("records")
        if not isinstance(records, list) or not all(
            isinstance(r, dict) and all(f in r for f in self.key_fields) for r in records
        ):
            raise CheckpointError(
                f"{self.path} holds malformed records (each needs {', '.join(self.key_fields)}): "
                f"{advice}"
            )
        self.records = {self._key(r): r for r in records}

    def get(self, **key):
        """The stored record with these key values, or None."""
        return self.records.get(json.dumps([key[f] for f in self.key_fields]))

    def add(self, record):
        """Store one finished record (replacing one with the same key) and rewrite the file."""
        record = json.loads(json.dumps(record))
        self.records[self._key(record)] = record
        self.path.parent.mkdir(parents=True, exist_ok=True)
        payload = {"format": FORMAT, "config": self.config, "records": list(self.records.values())}
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text(json.dumps(payload))
        os.replace(tmp, self.path)
