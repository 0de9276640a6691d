"""Learning-rate schedules: warmup then step / cosine / poly / linear, as a pure function.

:func:`lr_at` reproduces GluonCV's ``LRSequential([LRScheduler('linear', ...warmup...),
LRScheduler(mode, ...)])`` as its training scripts build it (``train_yolo3.py``):

* warmup: ``W`` iterations rising linearly from ``warmup_lr`` (GluonCV: 0) and reaching
  ``base_lr`` at iteration ``W - 1``;
* then ``mode`` over the remaining ``N + 1 = total - W`` iterations, with ``T = it - W`` clamped to
  ``[0, N]``: cosine ``target + (base - target) * (1 + cos(pi * T / N)) / 2``, poly
  ``target + (base - target) * (1 - T / N) ** power``, linear the same with power 1, and step
  ``base * step_factor ** (number of decay epochs e with (e * iters_per_epoch - W) <= T)``, i.e. the
  decays fall on the absolute epochs given (GluonCV's scripts subtract ``warmup_epochs`` from the
  decay epochs because its step counter starts after warmup);
* iterations past the end keep the last value (``LRSequential`` clamps to ``total - 1``).

:class:`LRScheduler` applies it to a torch optimizer each iteration. Like MXNet's ``Trainer``
(which GluonCV trains with), the n-th optimizer update (n = 1, 2, ...) uses ``lr_at(n)``, so the
lr of the very first update is not the warmup's 0.
"""
from __future__ import annotations

import math
from typing import Any, Callable, Mapping, Sequence

from ..errors import ConfigError

__all__ = ["lr_at", "LRScheduler", "plot_lr_schedule"]

MODES = ("constant", "step", "linear", "poly", "cosine")


def lr_at(iteration: int, *, base_lr: float, mode: str = "step", epochs: float | None = None,
          iters_per_epoch: int = 1, total_iters: int | None = None, warmup_epochs: float = 0,
          warmup_iters: int | None = None, warmup_lr: float = 0.0,
          warmup_factor: float | None = None, step_epochs: Sequence[float] = (),
          step_iters: Sequence[int] | None = None, step_factor: float = 0.1,
          power: float = 2.0, target_lr: float = 0.0) -> float:
    """Learning rate at a (0-based) iteration.

    Args:
        iteration: iteration index, >= 0 (GluonCV's ``num_update``).
        base_lr: the lr after warmup.
        mode: 'step', 'cosine', 'poly', 'linear' or 'constant'.
        epochs, iters_per_epoch: the schedule spans ``epochs * iters_per_epoch`` iterations
            (or give ``total_iters``).
        warmup_epochs / warmup_iters: warmup length (``warmup_iters`` wins when given).
        warmup_lr: absolute lr at warmup iteration 0 (GluonCV: 0.0); or
        warmup_factor: start at ``warmup_factor * base_lr`` (Faster R-CNN style, e.g. 1/3).
        step_epochs / step_iters: absolute epochs (or iterations) where step mode multiplies the
            lr by ``step_factor``.
        power: poly exponent (GluonCV's detection scripts pass 2).
        target_lr: final lr of cosine / poly / linear (ignored by step and constant).
    """
    if mode not in MODES:
        raise ValueError(f"lr_at: mode must be one of {MODES}, got {mode!r}")
    if iteration < 0:
        raise ValueError(f"lr_at: iteration must be >= 0, got {iteration}")
    if total_iters is None:
        if epochs is None:
            raise ValueError("lr_at: give epochs (with iters_per_epoch) or total_iters")
        total_iters = int(epochs * iters_per_epoch)
    warmup = int(warmup_iters) if warmup_iters is not None else \
        int(warmup_epochs * iters_per_epoch)
    if total_iters <= warmup:
        raise ConfigError(f"the schedule's {total_iters} updates in all leave none after its {warmup} warmup "
                          f"updates: train for more epochs or warm up for fewer")
    if warmup_factor is not None:
        if warmup_lr:
            raise ValueError("lr_at: give warmup_lr or warmup_factor, not both")
        warmup_lr = warmup_factor * base_lr

    it = min(int(iteration), total_iters - 1)
    if it < warmup:
        if warmup == 1:
            return float(warmup_lr)
        # GluonCV's 'linear' LRScheduler from warmup_lr (its base) to base_lr (its target)
        return base_lr + (warmup_lr - base_lr) * (1 - it / (warmup - 1))

    n = total_iters - warmup - 1
    t = min(max(0, it - warmup), n)
    frac = t / n if n > 0 else 0.0  # GluonCV divides by n = 0 here
    if mode == "step":
        if step_iters is None:
            step_iters = [e * iters_per_epoch for e in step_epochs]
        count = sum(1 for s in step_iters if s - warmup <= t)
        return base_lr * pow(step_factor, count)
    if mode == "constant":
        return float(base_lr)
    if mode == "linear":
        factor = 1 - frac
    elif mode == "poly":
        factor = pow(1 - frac, power)
    else:
        factor = (1 + math.cos(math.pi * t / n if n > 0 else 0.0)) / 2
    return target_lr + (base_lr - target_lr) * factor


class LRScheduler:
    """Sets a torch optimizer's learning rates from :func:`lr_at`, once per iteration.

    Each param group gets ``lr_at(n) * group.get('lr_mult', 1.0)`` for the n-th update.
    Usage::

        sched = LRScheduler(optimizer, base_lr=1e-3, mode='cosine', epochs=200,
                            iters_per_epoch=len(loader), warmup_epochs=2)
        for images, labels in loader:
            loss = ...; loss.backward(); optimizer.step(); optimizer.zero_grad()
            sched.step()

    Args:
        optimizer: a ``torch.optim.Optimizer`` (anything with ``param_groups``).
        first_update: the iteration given to ``lr_at`` for the first update: 1 as MXNet's
            Trainer and so GluonCV (default), 0 for the PyTorch habit.
        **schedule: keyword arguments of :func:`lr_at` (all but ``iteration``).
    """

    def __init__(self, optimizer: Any, *, first_update: int = 1, **schedule: Any):
        self.optimizer = optimizer
        self.first_update = int(first_update)
        self.schedule = dict(schedule)
        lr_at(self.first_update, **self.schedule)  # fail early on bad arguments
        self.num_update = 0  # optimizer updates done
        self._apply()

    @property
    def iteration(self) -> int:
        """The iteration whose lr the next optimizer update uses."""
        return self.num_update + self.first_update

    def lr(self) -> float:
        """Schedule value (before ``lr_mult``) for the next update."""
        return lr_at(self.iteration, **self.schedule)

    def _apply(self) -> None:
        lr = self.lr()
        for group in self.optimizer.param_groups:
            group["lr"] = lr * group.get("lr_mult", 1.0)

    def step(self) -> None:
        """Call once after each ``optimizer.step()``."""
        self.num_update += 1
        self._apply()

    def get_last_lr(self) -> list[float]:
        """Learning rates the param groups hold now (torch's scheduler interface)."""
        return [group["lr"] for group in self.optimizer.param_groups]

    def state_dict(self) -> dict:
        return {"num_update": self.num_update, "first_update": self.first_update,
                "schedule": dict(self.schedule)}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore the update counter (the schedule stays the one given to ``__init__``)."""
        self.num_update = int(state["num_update"])
        self.first_update = int(state.get("first_update", self.first_update))
        self._apply()


def plot_lr_schedule(schedule: Callable[[int], float] | Mapping[str, Any], total_iters: int,
                     path: str, *, iters_per_epoch: int | None = None,
                     title: str | None = None) -> str:
    """Write a PNG of the lr over ``range(total_iters)``.

    Args:
        schedule: ``f(iteration) -> lr`` or a dict of :func:`lr_at` keyword arguments (then the
            x axis is in epochs when it holds ``iters_per_epoch``).
        total_iters: iterations to plot.
        path: output .png path.
    Returns:
        ``path``.
    """
    from matplotlib.figure import Figure  # Agg canvas, no pyplot state touched

    if not callable(schedule):
        kwargs = dict(schedule)
        iters_per_epoch = iters_per_epoch or kwargs.get("iters_per_epoch")
        if title is None:
            warm = f"{kwargs['warmup_iters']} iterations" if "warmup_iters" in kwargs else \
                f"{kwargs.get('warmup_epochs', 0)} epochs"
            title = f"{kwargs.get('mode', 'step')} lr, warmup {warm}"
        fn = lambda it: lr_at(it, **kwargs)  # noqa: E731
    else:
        fn = schedule
    lrs = [fn(it) for it in range(total_iters)]
    scale = float(iters_per_epoch) if iters_per_epoch and iters_per_epoch > 1 else 1.0
    xs = [it / scale for it in range(total_iters)]

    fig = Figure(figsize=(6, 3.5), dpi=100)
    ax = fig.add_subplot(1, 1, 1)
    ax.plot(xs, lrs, lw=1.5)
    ax.set_xlabel("epoch" if scale > 1 else "iteration")
    ax.set_ylabel("learning rate")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    if title:
        ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path)
    return path
