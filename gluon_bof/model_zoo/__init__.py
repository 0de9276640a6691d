"""Model zoo: registered builders with GluonCV's names."""
from .registry import get_model, list_models, register_model  # noqa: F401
