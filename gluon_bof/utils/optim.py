"""Optimizers and their settings: MXNet's SGD and NAG update rules (:class:`MXNetSGD`, what
GluonCV trained with), parameter groups for the ``--no-wd`` freebie (no weight decay on biases and
norm layers) and the linear scaling rule of the learning rate (``--lr-base-batch``)."""
from collections import defaultdict
from typing import Dict, Iterable, List

import torch
import torch.nn as nn

__all__ = ["MXNetSGD", "build_sgd", "SGD_RULES", "param_groups", "linear_scaled_lr", "NORM_TYPES"]

SGD_RULES = ("mxnet", "torch")

NORM_TYPES = (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm)


def param_groups(model: nn.Module, weight_decay: float, no_wd: bool = False) -> List[Dict]:
    """Splits trainable parameters into decayed and non-decayed groups.

    With ``no_wd`` every bias and every parameter of a normalisation layer (BatchNorm's gamma and
    beta, GluonCV's ``wd_mult = 0`` for ``beta|gamma|bias``) gets ``weight_decay=0``; the rest keep
    ``weight_decay``. Without it all parameters form one decayed group.
    """
    decay, no_decay = [], []
    for module in model.modules():
        for name, p in module.named_parameters(recurse=False):
            if not p.requires_grad:
                continue
            if no_wd and (name == "bias" or isinstance(module, NORM_TYPES)):
                no_decay.append(p)
            else:
                decay.append(p)
    groups = [{"params": decay, "weight_decay": weight_decay}]
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0})
    return groups


def linear_scaled_lr(lr: float, batch_size: int, base_batch: int) -> float:
    """The linear scaling rule (Goyal et al. 2017; MegDet): ``lr * batch_size / base_batch``.

    ``lr`` is the learning rate tuned for ``base_batch`` images per update; ``batch_size`` is the
    global batch of one update (all processes and accumulated micro-batches together).
    """
    if batch_size < 1 or base_batch < 1:
        raise ValueError(f"optim.py: batch sizes must be >= 1, got batch {batch_size}, base {base_batch}")
    return lr * batch_size / base_batch


class MXNetSGD(torch.optim.Optimizer):
    """SGD with momentum, or NAG, with MXNet 1.9.1's update rules (GluonCV's ``'sgd'``/``'nag'``).

    With ``g = grad + weight_decay * w`` (the decay is added to the gradient, as torch's SGD) and
    the momentum buffer ``v`` (zero at the start):

    * SGD (``sgd_mom_update``): ``v = momentum * v - lr * g``; ``w = w + v``. The learning rate
      lives *inside* the buffer: after an lr change the buffer still carries steps taken at the old
      rate (torch's SGD keeps it outside, ``b = momentum * b + g; w -= lr * b``, so every past
      gradient is re-scaled by the new lr). The two agree only while lr is constant: during a
      linear warmup torch's early steps are ~1.5x MXNet's, right after a x0.1 decay ~0.11x.
    * NAG (``nesterov=True``, ``nag_mom_update`` as MXNet 1.9.1 runs it, in place):
      ``v' = momentum * v``; ``w_new = w + momentum * v' - (1 + momentum) * lr * g``;
      ``v = v' - lr * (grad + weight_decay * w_new)``. The buffer's decay term reads the already
      updated weight because MXNet writes the weight before the buffer in the same kernel (its
      docstring's formula, torch's nesterov, differs); measured against MXNet 1.9.1 itself.
    * ``momentum == 0``: ``w = w - lr * g`` for both.

    Param groups take ``lr``, ``momentum``, ``weight_decay`` and ``nesterov``; the buffer is
    ``state['momentum_buffer']``. ``foreach`` (default: on) updates each device/dtype group of
    tensors with torch's multi-tensor kernels, as torch's own SGD does. Works with
    ``torch.amp.GradScaler`` (which unscales the gradients and calls :meth:`step`), DDP and
    gradient accumulation (it only reads ``.grad``).
    """

    def __init__(self, params, lr: float = 1e-3, momentum: float = 0.0, weight_decay: float = 0.0,
                 nesterov: bool = False, *, foreach: bool = True):
        if lr < 0 or momentum < 0 or weight_decay < 0:
            raise ValueError(f"optim.py: lr, momentum and weight_decay must be >= 0, got "
                             f"{lr}, {momentum}, {weight_decay}")
        super().__init__(params, dict(lr=lr, momentum=momentum, weight_decay=weight_decay,
                                      nesterov=nesterov, foreach=foreach))

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            if any(p.grad.is_sparse for p in params):
                raise RuntimeError("MXNetSGD does not support sparse gradients")
            lr, m, wd = group["lr"], group["momentum"], group["weight_decay"]
            bufs = []
            if m != 0:
                for p in params:
                    state = self.state[p]
                    if "momentum_buffer" not in state:
                        state["momentum_buffer"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    bufs.append(state["momentum_buffer"])
            update = _update_foreach if group["foreach"] else _update_loop
            for key, idx in _by_device_and_dtype(params).items():
                update([params[i] for i in idx], [params[i].grad for i in idx],
                       [bufs[i] for i in idx] if m != 0 else None, lr=lr, momentum=m, wd=wd,
                       nesterov=group["nesterov"])
        return loss


def _by_device_and_dtype(params: List[torch.Tensor]) -> Dict[tuple, List[int]]:
    groups = defaultdict(list)
    for i, p in enumerate(params):
        groups[(p.device, p.dtype)].append(i)
    return groups


def _update_foreach(params, grads, bufs, *, lr, momentum, wd, nesterov):
    g = torch._foreach_add(grads, params, alpha=wd) if wd != 0 else list(grads)
    if bufs is None:
        torch._foreach_add_(params, g, alpha=-lr)
        return
    torch._foreach_mul_(bufs, momentum)  # v' = m v
    if not nesterov:
        torch._foreach_add_(bufs, g, alpha=-lr)  # v = m v - lr g
        torch._foreach_add_(params, bufs)  # w += v
        return
    torch._foreach_add_(params, bufs, alpha=momentum)  # w += m v'
    torch._foreach_add_(params, g, alpha=-(1 + momentum) * lr)  # w -= (1 + m) lr g
    g_new = torch._foreach_add(grads, params, alpha=wd) if wd != 0 else g  # decay of the new w
    torch._foreach_add_(bufs, g_new, alpha=-lr)  # v = v' - lr (grad + wd w_new)


def _update_loop(params, grads, bufs, *, lr, momentum, wd, nesterov):
    for i, (p, grad) in enumerate(zip(params, grads)):
        g = grad.add(p, alpha=wd) if wd != 0 else grad
        if bufs is None:
            p.add_(g, alpha=-lr)
            continue
        v = bufs[i].mul_(momentum)
        if not nesterov:
            v.add_(g, alpha=-lr)
            p.add_(v)
            continue
        p.add_(v, alpha=momentum).add_(g, alpha=-(1 + momentum) * lr)
        v.add_(grad.add(p, alpha=wd) if wd != 0 else g, alpha=-lr)


def build_sgd(groups: Iterable, *, lr: float, momentum: float, nesterov: bool = False,
              rule: str = "mxnet") -> torch.optim.Optimizer:
    """The training scripts' optimizer: :class:`MXNetSGD` (``rule='mxnet'``, GluonCV's updates) or
    ``torch.optim.SGD`` (``rule='torch'``, lr outside the momentum buffer; its NAG is the
    textbook ``w -= lr * (g + momentum * b)``). ``nesterov`` selects NAG (Bag of Tricks 3.1)."""
    if rule == "mxnet":
        return MXNetSGD(groups, lr=lr, momentum=momentum, nesterov=nesterov)
    if rule == "torch":
        return torch.optim.SGD(groups, lr=lr, momentum=momentum, nesterov=nesterov)
    raise ValueError(f"optim.py: unknown SGD rule {rule!r}; choose one of {SGD_RULES}")
