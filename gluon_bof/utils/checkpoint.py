"""Checkpoints written atomically, holding everything a run needs to continue exactly.

A checkpoint is a dict saved with ``torch.save``: ``model``, ``optimizer``, ``lr_scheduler``,
``scaler`` (state dicts), ``epoch`` (epochs completed), ``epoch_iter`` (batches done in the current
epoch), ``rng`` (Python, NumPy, torch and CUDA generator states), ``model_name`` and
``model_kwargs`` (to rebuild the network with ``get_model``), ``best_map`` and ``args`` (the resolved
settings, also written beside it as JSON).
"""
import json
import os
import random

import numpy as np
import torch

from ..errors import CheckpointError
from .fileio import atomic_open

__all__ = ["atomic_save", "save_checkpoint", "load_checkpoint", "get_rng_state", "set_rng_state",
           "build_model_from_checkpoint"]


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


def save_checkpoint(path: str, *, model, optimizer=None, lr_scheduler=None, scaler=None, epoch=0,
                    epoch_iter=0, model_name=None, model_kwargs=None, best_map=None, args=None,
                    extra=None) -> None:
    """Writes a resumable checkpoint to ``path`` (atomically) and its settings to ``path``'s ``.json``."""
    net = model.module if hasattr(model, "module") else model
    state = {
        "model": net.state_dict(),
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "lr_scheduler": lr_scheduler.state_dict() if lr_scheduler is not None else None,
        "scaler": scaler.state_dict() if scaler is not None else None,
        "epoch": epoch,
        "epoch_iter": epoch_iter,
        "rng": get_rng_state(),
        "model_name": model_name,
        "model_kwargs": model_kwargs or {},
        "best_map": best_map,
        "args": args or {},
    }
    if extra:
        state.update(extra)
    atomic_save(state, path)
    if args is not None:
        with atomic_open(os.path.splitext(path)[0] + ".json", "w") as f:
            f.write(json.dumps(args, indent=2, sort_keys=True, default=str))


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


def build_model_from_checkpoint(path: str, map_location="cpu", **overrides):
    """Rebuilds the network a checkpoint was trained with (``get_model(model_name, **model_kwargs)``)
    and loads its weights. Returns ``(model, checkpoint)``."""
    from ..model_zoo import get_model

    state = load_checkpoint(path, map_location)
    if not state.get("model_name"):
        raise ValueError(f"checkpoint {path!r} does not record its model name")
    kwargs = dict(state.get("model_kwargs") or {})
    kwargs.update(overrides)
    model = get_model(state["model_name"], **kwargs)
    model.load_state_dict(state["model"])
    return model, state
