"""Trained models of the network tutorials (sorting, jigsaw, digit-to-digit), one file per
setting, so that evaluation and interrupted runs do not retrain.

Each file holds ``{"format", "config", "state_dict", "train_seconds", "final_loss", "device"}``
and is written atomically (a temporary file, then ``os.replace``). A file written with other
settings, or one that does not load, is refused with an error saying what to do, never reused
silently.
"""

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
