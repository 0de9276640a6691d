"""A small registry of model builders: ``register_model``, ``get_model`` and ``list_models``.

Each named variant is a registered function that only sets arguments (as timm does), so the
registry never holds a hand-kept table of constructors.
"""
from typing import Callable, Dict, List

_MODELS: Dict[str, Callable] = {}

__all__ = ["register_model", "get_model", "list_models"]


def register_model(name: str = None):
    """Decorator that registers a model builder under ``name`` (default: the function's name).

    Registering the same name twice is an error.
    """

    def wrap(fn: Callable) -> Callable:
        key = (name or fn.__name__).lower()
        if key in _MODELS:
            raise ValueError(f"model name {key!r} is already registered (by {_MODELS[key].__module__})")
        _MODELS[key] = fn
        return fn

    return wrap


def get_model(name: str, **kwargs):
    """Builds the model registered as ``name`` (GluonCV's names, case-insensitive).

    Keyword arguments go to the builder (``classes=...``, ``pretrained_base=...``, ``norm_layer=...``).
    """
    key = name.lower()
    if key not in _MODELS:
        close = [m for m in _MODELS if key.split("_")[0] in m][:10]
        hint = f" Similar names: {', '.join(close)}." if close else ""
        raise ValueError(f"unknown model {name!r}.{hint} See gluon_bof.model_zoo.list_models().")
    return _MODELS[key](**kwargs)


def list_models() -> List[str]:
    """Returns the sorted names of all registered models."""
    return sorted(_MODELS)
