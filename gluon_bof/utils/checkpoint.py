"""Checkpoint files: written atomically, read with errors that name the file, and the random
generators' states they carry. The schema (what a checkpoint holds) is
:class:`gluon_bof.training.TrainingState`'s.
"""
import json
import os
import random
from typing import Optional

import numpy as np
import torch

from ..errors import CheckpointError
from .fileio import atomic_open

__all__ = ["atomic_save", "save_checkpoint", "load_checkpoint", "get_rng_state", "set_rng_state",
           "MissingCheckpointError"]


def atomic_save(obj, path: str) -> None:
    """``torch.save`` to a temporary file in the same directory, fsync, then rename over ``path``.

    A crash at any point leaves either the old file or the new one, never a partial file.
    """
    with atomic_open(path, "wb") as f:
        torch.save(obj, f)


class MissingCheckpointError(CheckpointError, FileNotFoundError):
    """The checkpoint file does not exist."""


def get_rng_state() -> dict:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(path: str, state: dict, settings: Optional[dict] = None) -> None:
    """Writes the checkpoint dict ``state`` to ``path`` atomically, and ``settings`` (the resolved
    run settings) beside it as ``path``'s ``.json``. What goes into ``state`` is defined in one
    place, :class:`gluon_bof.training.TrainingState`."""
    atomic_save(state, path)
    if settings is not None:
        with atomic_open(os.path.splitext(path)[0] + ".json", "w") as f:
            f.write(json.dumps(settings, indent=2, sort_keys=True, default=str))


def load_checkpoint(path: str, map_location="cpu") -> dict:
    """Loads a checkpoint written by :func:`save_checkpoint`, with a clear error if it is not one."""
    if not os.path.isfile(path):
        raise MissingCheckpointError(f"checkpoint {path!r} does not exist")
    try:
        state = torch.load(path, map_location=map_location, weights_only=False)
    except Exception as e:  # truncated or foreign file
        raise CheckpointError(f"checkpoint {path!r} could not be read ({type(e).__name__}: {e})") from e
    if not isinstance(state, dict) or "model" not in state:
        raise CheckpointError(f"{path!r} is not a gluon-bof checkpoint (no 'model' entry)")
    return state
