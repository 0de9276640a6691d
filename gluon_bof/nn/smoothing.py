"""Label smoothing: the one place its target values are defined, for every head that smooths.

Bag of Tricks (Eq. 4) and Bag of Freebies (Eq. 3) give the true class ``1 - eps`` and every other
of the ``K`` classes ``eps / (K - 1)``. GluonCV implements two other rules, kept as options:
its train_imagenet.py spreads ``eps`` over all ``K`` classes (``1 - eps + eps / K`` and
``eps / K``), and its YOLOv3 target merger uses ``1 - s`` and ``s`` with ``s = min(1/K, 1/40)``
whatever ``eps``.
"""
from typing import Tuple

__all__ = ["RULES", "smoothing_values"]

RULES = ("paper", "uniform", "gluoncv_yolo")


def smoothing_values(num_classes: int, eps: float = 0.1, rule: str = "paper") -> Tuple[float, float]:
    """``(true class, each other class)`` target values of label smoothing over ``num_classes``.

    ``rule``: 'paper' (``1 - eps``, ``eps / (K - 1)``; one class: ``1 - eps``, nothing else),
    'uniform' (GluonCV's classifiers: ``1 - eps + eps / K``, ``eps / K``) or 'gluoncv_yolo'
    (GluonCV's YOLOv3: ``1 - s``, ``s``, ``s = min(1 / K, 1 / 40)``; ``eps`` unused).
    """
    if rule not in RULES:
        raise ValueError(f"smoothing.py: label smoothing rule must be one of {RULES}, got {rule!r}")
    if not 0.0 <= eps < 1.0:
        raise ValueError(f"smoothing.py: label smoothing eps must be in [0, 1), got {eps}")
    if num_classes < 1:
        raise ValueError(f"smoothing.py: label smoothing needs a class, got {num_classes}")
    if rule == "paper":
        return 1.0 - eps, (eps / (num_classes - 1) if num_classes > 1 else 0.0)
    if rule == "uniform":
        return 1.0 - eps + eps / num_classes, eps / num_classes
    s = min(1.0 / num_classes, 1.0 / 40)
    return 1.0 - s, s
