"""Load GluonCV ``.params`` weights into gluon-bof models, and export ours for GluonCV.

No MXNet is needed: files are read and written by :mod:`.mxnet_params`.

Our models mirror GluonCV's structural parameter names (the names ``net.save_parameters``
writes, e.g. ``stages.0.0.0.weight``), so the default mapping only renames what PyTorch calls
differently: a norm layer's ``weight``/``bias`` are GluonCV's ``gamma``/``beta``, and PyTorch's
``num_batches_tracked`` has no GluonCV counterpart. A family whose layout differs registers a
:class:`GluonCVMapping` under its class name with :func:`register_gluoncv_mapping`::

    register_gluoncv_mapping("FasterRCNN", GluonCVMapping(
        to_gluoncv=lambda key: key.replace("roi_head.", "top_features."),
        computed=("anchors",)))

GluonCV also stores constants that our models compute (YOLOv3's ``yolo_outputs.{i}.anchors`` and
``.offsets``); those are ``computed`` names: not required when loading, checked for equal values
when listed in ``verify`` (anchors: a mismatch means a different model variant), and written on
export because GluonCV's ``load_parameters`` requires them.

A model whose GluonCV names depend on how it was built (GluonCV names norm blocks after their
class: the FPN detector's backbone norms are ``batchnorm`` in the plain model and
``syncbatchnorm`` in the SyncBN variant) exposes its own ``gluoncv_mapping`` attribute, which
takes precedence over the class's.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Mapping, NamedTuple, Tuple, Union

import numpy as np
import torch
from torch import nn

from .mxnet_params import load_params, save_params

__all__ = ["GluonCVMapping", "GluonCVLoadResult", "register_gluoncv_mapping",
           "load_gluoncv_params", "export_gluoncv_params", "gluoncv_state", "dtype_fits"]

_NORM_TYPES = (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm)
_MAX_LISTED = 20


@dataclass(frozen=True)
class GluonCVMapping:
    """How one model family's state-dict keys correspond to GluonCV parameter names.

    Args:
        to_gluoncv: maps our key (norm ``weight``/``bias`` already renamed ``gamma``/``beta``) to
            GluonCV's structural name; identity by default.
        computed: last name components of constants GluonCV stores that our model computes.
        verify: those ``computed`` components whose stored values must equal ours.
        gluoncv_rank: ``{component: rank}`` for constants GluonCV stores with more leading unit
            axes than we keep (YOLO's offset grid is 5-D there, 4-D here so that
            ``net.to(memory_format=torch.channels_last)`` works); export pads them back.
    """
    to_gluoncv: Callable[[str], str] = lambda key: key
    computed: Tuple[str, ...] = ()
    verify: Tuple[str, ...] = ()
    gluoncv_rank: Dict[str, int] = field(default_factory=dict)


class GluonCVLoadResult(NamedTuple):
    """What :func:`load_gluoncv_params` did not load (GluonCV names)."""
    missing_keys: List[str]
    unexpected_keys: List[str]
    skipped_constants: List[str]


_MAPPINGS: Dict[str, GluonCVMapping] = {
    "YOLOV3": GluonCVMapping(computed=("anchors", "offsets"), verify=("anchors",),
                             gluoncv_rank={"offsets": 5}),
}


def register_gluoncv_mapping(class_name: str, mapping: GluonCVMapping) -> None:
    """Uses ``mapping`` for models whose class (or a base class) is named ``class_name``."""
    _MAPPINGS[class_name] = mapping


def _mapping_for(net: nn.Module) -> GluonCVMapping:
    own = getattr(net, "gluoncv_mapping", None)  # a model whose names depend on how it was built
    if isinstance(own, GluonCVMapping):
        return own
    for cls in type(net).__mro__:
        if cls.__name__ in _MAPPINGS:
            return _MAPPINGS[cls.__name__]
    return GluonCVMapping()


def _gluoncv_names(net: nn.Module, mapping: GluonCVMapping) -> Dict[str, str]:
    """Our state-dict key -> GluonCV name, for every key GluonCV has."""
    norms = {name for name, m in net.named_modules() if isinstance(m, _NORM_TYPES)
             or hasattr(m, "running_mean")}
    names = {}
    for key in net.state_dict():
        prefix, _, leaf = key.rpartition(".")
        if leaf == "num_batches_tracked":
            continue
        if prefix in norms and leaf in ("weight", "bias"):
            leaf = "gamma" if leaf == "weight" else "beta"
        names[key] = mapping.to_gluoncv(f"{prefix}.{leaf}" if prefix else leaf)
    inverse: Dict[str, str] = {}
    for key, gname in names.items():
        if gname in inverse:
            raise ValueError(f"gluoncv.py: {type(net).__name__} keys {inverse[gname]!r} and "
                             f"{key!r} both map to GluonCV name {gname!r}")
        inverse[gname] = key
    return names


def gluoncv_state(net: nn.Module) -> Dict[str, np.ndarray]:
    """``GluonCV name -> np.ndarray`` of ``net``'s parameters and buffers, in state-dict order,
    float tensors as float32 (GluonCV's dtype), constants GluonCV stores included."""
    sd = net.state_dict()
    mapping = _mapping_for(net)
    out = {}
    for key, gname in _gluoncv_names(net, mapping).items():
        t = sd[key].detach().cpu()
        arr = (t.float() if t.is_floating_point() else t).contiguous().numpy()
        rank = mapping.gluoncv_rank.get(gname.rpartition(".")[2], arr.ndim)
        out[gname] = arr.reshape((1,) * (rank - arr.ndim) + arr.shape)
    return out


def _as_numpy(value) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().numpy()
    return np.asarray(value)


def _listing(title: str, items: List[str]) -> str:
    shown = ", ".join(items[:_MAX_LISTED])
    more = f" ... (+{len(items) - _MAX_LISTED} more)" if len(items) > _MAX_LISTED else ""
    return f"\n  {title} ({len(items)}): {shown}{more}"


def load_gluoncv_params(net: nn.Module, path_or_dict: Union[str, os.PathLike, Mapping],
                        strict: bool = True) -> GluonCVLoadResult:
    """Loads GluonCV weights into ``net`` (all at once, or nothing on error).

    Args:
        net: a gluon-bof model whose structure matches the GluonCV model that wrote the weights
            (e.g. ``get_model('yolo3_darknet53_voc')`` for GluonCV's ``yolo3_darknet53_voc``).
        path_or_dict: a ``.params`` file (path or binary stream) written by GluonCV's
            ``save_parameters`` (or ``mx.nd.save``), or a mapping ``GluonCV name -> array``
            (NumPy arrays or torch tensors).
        strict: if True, any missing or unexpected parameter is an error; if False they are
            returned. A shape mismatch or a differing verified constant (YOLO anchors) is always
            an error. The error lists every offending name.

    Returns:
        :class:`GluonCVLoadResult` with the GluonCV names not loaded.
    """
    if isinstance(path_or_dict, (str, os.PathLike)) or hasattr(path_or_dict, "read"):
        params = load_params(path_or_dict)
        label = (getattr(path_or_dict, "name", "<stream>") if hasattr(path_or_dict, "read")
                 else os.fspath(path_or_dict))
    else:
        params, label = path_or_dict, "the given dict"
    if params and not any("." in name for name in params):
        raise ValueError(f"{label}: parameter names like {next(iter(params))!r} are MXNet's legacy "
                         f"prefixed names; re-save the weights with GluonCV's "
                         f"net.save_parameters(), which writes structural names")
    mapping = _mapping_for(net)
    ours = _gluoncv_names(net, mapping)
    by_gluoncv = {gname: key for key, gname in ours.items()}
    state = net.state_dict()
    new_state = dict(state)
    missing, unexpected, misshaped, skipped, differ, mistyped = [], [], [], [], [], []
    for gname, value in params.items():
        leaf = gname.rpartition(".")[2]
        key = by_gluoncv.get(gname)
        if leaf in mapping.computed:
            skipped.append(gname)
            if leaf in mapping.verify and key is not None:
                arr = _as_numpy(value)
                mine = state[key].detach().cpu().numpy()
                if arr.size != mine.size or not np.allclose(arr.reshape(mine.shape), mine):
                    differ.append(f"{gname} (file {arr.reshape(-1).tolist()}, "
                                  f"model {mine.reshape(-1).tolist()})")
            continue
        if key is None:
            unexpected.append(gname)
            continue
        arr = _as_numpy(value)
        target = state[key]
        if tuple(arr.shape) != tuple(target.shape):
            misshaped.append(f"{gname} (file {tuple(arr.shape)}, model {tuple(target.shape)})")
            continue
        if not dtype_fits(arr.dtype, target.dtype):
            mistyped.append(f"{gname} (file {arr.dtype}, model {str(target.dtype).replace('torch.', '')})")
            continue
        new_state[key] = torch.as_tensor(np.ascontiguousarray(arr)).to(dtype=target.dtype)
    for gname in ours.values():
        if gname not in params and gname.rpartition(".")[2] not in mapping.computed:
            missing.append(gname)
    fatal = bool(misshaped or differ or mistyped) or (strict and bool(missing or unexpected))
    if fatal:
        msg = f"{label}: cannot load into {type(net).__name__}; nothing was loaded."
        for title, items in (("mis-shaped", misshaped), ("differing constants", differ),
                             ("incompatible dtypes (only a float may widen, as MXNet's load_parameters "
                              "refuses any other)", mistyped),
                             ("missing", missing), ("unexpected", unexpected)):
            if items:
                msg += _listing(title, items)
        raise ValueError(msg)
    net.load_state_dict(new_state, strict=True)
    return GluonCVLoadResult(missing, unexpected, skipped)


def dtype_fits(stored, target: torch.dtype) -> bool:
    """Whether a stored array of dtype ``stored`` (NumPy) may load into a ``target`` tensor: the
    same dtype, or a float into a float at least as wide (float16 weights into a float32 model).
    Anything else (float weights stored as int32 would load as values ~1e9; a float64 file into a
    float32 model loses precision) is refused, as MXNet refuses every dtype mismatch."""
    stored = np.dtype(stored)
    width = torch.empty((), dtype=target).element_size()
    if target.is_floating_point:
        return stored.kind == "f" and stored.itemsize <= width
    return stored.kind in "iub" and np.dtype(str(target).replace("torch.", "")) == stored


def export_gluoncv_params(net: nn.Module, path: Union[str, os.PathLike]) -> None:
    """Writes ``net``'s weights as a ``.params`` file that GluonCV's ``net.load_parameters``
    accepts for the same model (structural names, float32, YOLO constants included)."""
    save_params(path, gluoncv_state(net))
