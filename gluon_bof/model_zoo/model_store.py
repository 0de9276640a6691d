"""GluonCV's pretrained weights: download once, verify, cache, convert once.

    from gluon_bof.model_zoo.model_store import get_model_file, load_pretrained
    path = get_model_file("yolo3_darknet53_voc")      # ~/.gluon_bof/models/yolo3_darknet53_voc-f5ece5ce.params
    load_pretrained(net, "yolo3_darknet53_voc")         # also caches yolo3_darknet53_voc-f5ece5ce.pth

GluonCV's layout and checks: the file ``{name}-{sha1[:8]}.params`` comes from
``{repo}gluon/models/{name}-{sha1[:8]}.zip`` and must have the sha1 of GluonCV's table
(``gluoncv_sha1.txt``, GluonCV 0.10.5's ``model_store._model_sha1``; it is the sha1 of the
``.params`` file, not of the zip). ``repo`` is ``$MXNET_GLUON_REPO`` (as in GluonCV) or GluonCV's
S3 bucket (:data:`GLUONCV_REPO`).

Where files come from, in order:

1. the cache ``$GLUON_BOF_HOME/models`` (default ``~/.gluon_bof/models``), if the sha1 matches;
2. a local mirror directory: ``$GLUON_BOF_MIRROR=/dir``, or ``$MXNET_GLUON_REPO`` given as
   ``file:///dir/`` or a plain path. ``{file}.params`` or ``{file}.zip`` is looked up in
   ``/dir/gluon/models/`` (the repo's own layout) and in ``/dir/``. A ``file://``/path repo is
   final; a ``$GLUON_BOF_MIRROR`` that lacks the file falls through to the repo URL;
3. the repo URL, with :func:`gluon_bof.utils.download.download` (tqdm progress bar, retries with
   backoff). A zip that is unreadable or whose ``.params`` has the wrong sha1 is deleted and
   fetched again (:data:`RETRIES` attempts), then :class:`ModelStoreError` names the file, the URL
   and both sha1s. When the repo cannot be reached the error says where to put the file by hand.

Files are written atomically (temporary file + ``os.replace``) under an ``fcntl`` lock on
``{file}.params.lock``: a second process asking for the same file waits, then finds it.

:func:`register_model_sha1` adds or replaces a table entry (your own mirrored weights, or tests).
"""
from __future__ import annotations

import hashlib
import logging
import os
import urllib.parse
import zipfile
from typing import Dict, List, Optional, Tuple

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from torch import nn

from ..errors import CheckpointError, GluonBofError
from ..utils.checkpoint import atomic_save
from ..utils.download import DownloadError, download, file_lock, file_sha1
from ..utils.fileio import atomic_open, remove_stale_temporaries
from ..utils.home import gluon_bof_home
from .gluoncv import _listing, dtype_fits, load_gluoncv_params

__all__ = ["GLUONCV_REPO", "MODEL_SHA1", "ModelStoreError", "register_model_sha1", "short_hash",
           "pretrained_model_list", "model_root", "get_model_file", "load_pretrained",
           "load_weights_file", "load_safetensors", "file_sha256", "purge"]

logger = logging.getLogger(__name__)

GLUONCV_REPO = "https://apache-mxnet.s3-accelerate.dualstack.amazonaws.com/"
URL_FORMAT = "{repo}gluon/models/{file_name}.zip"
RETRIES = 3         # attempts at a zip whose content is wrong (each also retries transport errors)
BACKOFF_S = 1.0     # wait before transport retry k: BACKOFF_S * 2 ** (k - 1) seconds
CACHE_FORMAT = 1    # version of the converted .pth cache layout
_CHUNK = 1 << 20


class ModelStoreError(GluonBofError, RuntimeError):
    """Pretrained weights could not be obtained or verified (the message says what to do)."""


def _read_table() -> Dict[str, str]:
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "gluoncv_sha1.txt")
    table = {}
    with open(path) as f:
        for line in f:
            if line.strip() and not line.startswith("#"):
                sha1, name = line.split()
                table[name] = sha1
    return table


MODEL_SHA1: Dict[str, str] = _read_table()


def register_model_sha1(name: str, sha1: str) -> Optional[str]:
    """Adds or replaces the sha1 of ``name``'s ``.params`` file; returns the previous one (None)."""
    if len(sha1) != 40 or any(c not in "0123456789abcdef" for c in sha1.lower()):
        raise ValueError(f"model_store: {sha1!r} is not a 40-digit hex sha1")
    previous = MODEL_SHA1.get(name.lower())
    MODEL_SHA1[name.lower()] = sha1.lower()
    return previous


def _sha1_of(name: str) -> str:
    key = name.lower()
    if key not in MODEL_SHA1:
        close = [n for n in MODEL_SHA1 if key.split("_")[0] in n][:8]
        hint = f" Names with weights: {', '.join(close)} ..." if close else ""
        raise ModelStoreError(f"GluonCV publishes no pretrained weights for {name!r}.{hint} "
                              f"Pass a weights file instead (pretrained='/path/file.params' or .pth).")
    return MODEL_SHA1[key]


def short_hash(name: str) -> str:
    """The first 8 hex digits of the sha1 of ``name``'s GluonCV ``.params`` file."""
    return _sha1_of(name)[:8]


def pretrained_model_list() -> List[str]:
    """Names that have GluonCV pretrained weights in the table."""
    return list(MODEL_SHA1)


def model_root(root: Optional[str] = None) -> str:
    """The cache directory: ``root``, else ``$GLUON_BOF_HOME/models`` (``~/.gluon_bof/models``).
    Temporary files that killed downloads left there are removed."""
    root = os.path.abspath(os.path.expanduser(root)) if root is not None else os.path.join(gluon_bof_home(), "models")
    remove_stale_temporaries(root)
    return root


def _repo_url() -> str:
    repo = os.environ.get("MXNET_GLUON_REPO", GLUONCV_REPO)
    return repo if repo.endswith("/") else repo + "/"


def _local_dir(repo: str) -> Optional[str]:
    """The directory a ``file://`` URL or plain path names, else None."""
    parsed = urllib.parse.urlparse(repo)
    if parsed.scheme == "file":
        return urllib.parse.unquote(parsed.path)
    if not parsed.scheme or len(parsed.scheme) == 1:  # a path (or a Windows drive letter)
        return os.path.expanduser(repo)
    return None


def _find_in_mirror(directory: str, file_name: str) -> Optional[str]:
    for sub in (os.path.join("gluon", "models"), ""):
        for ext in (".params", ".zip"):
            cand = os.path.join(directory, sub, file_name + ext)
            if os.path.isfile(cand):
                return cand
    return None


class _Sha1Mismatch(Exception):
    pass


def _write_verified(src, dest: str, sha1: str) -> Tuple[bool, str]:
    """Copies the binary stream ``src`` to ``dest`` through a temporary file, hashing on the way;
    replaces ``dest`` only if the sha1 matches. Returns ``(ok, actual sha1)``."""
    h = hashlib.sha1()
    try:
        with atomic_open(dest, "wb") as out:
            for block in iter(lambda: src.read(_CHUNK), b""):
                h.update(block)
                out.write(block)
            if h.hexdigest() != sha1:
                raise _Sha1Mismatch  # leaves dest untouched, the temporary file removed
    except _Sha1Mismatch:
        return False, h.hexdigest()
    return True, sha1


def _extract(archive: str, dest: str, sha1: str) -> Tuple[bool, str]:
    """Writes the ``.params`` inside ``archive`` (a zip) or ``archive`` itself to ``dest`` if its
    sha1 matches. An unreadable zip counts as a mismatch (actual sha1 of the zip reported)."""
    if archive.endswith(".params"):
        with open(archive, "rb") as f:
            return _write_verified(f, dest, sha1)
    try:
        with zipfile.ZipFile(archive) as zf:
            members = [m for m in zf.namelist() if m.endswith(".params")]
            want = os.path.basename(dest)
            member = want if want in members else (members[0] if len(members) == 1 else None)
            if member is None:
                return False, f"{file_sha1(archive)} (zip without {want})"
            with zf.open(member) as f:
                return _write_verified(f, dest, sha1)
    except (zipfile.BadZipFile, EOFError, zipfile.LargeZipFile) as e:
        return False, f"{file_sha1(archive)} (not a readable zip: {e})"


def _placement_hint(file_name: str, params_path: str, sha1: str) -> str:
    return (f"To install it by hand, put {file_name}.params (sha1 {sha1}) at {params_path}, or put "
            f"{file_name}.zip (or .params) in a directory D and set GLUON_BOF_MIRROR=D "
            f"(or MXNET_GLUON_REPO=file:///D/). GluonCV's copy is at "
            f"{URL_FORMAT.format(repo=GLUONCV_REPO, file_name=file_name)}.")


def get_model_file(name: str, root: Optional[str] = None) -> str:
    """Path of GluonCV's verified ``{name}-{hash8}.params`` in the cache, fetched if needed
    (see the module docstring for the sources, environment variables and errors)."""
    sha1 = _sha1_of(name)
    file_name = f"{name.lower()}-{sha1[:8]}"
    root = model_root(root)
    os.makedirs(root, exist_ok=True)
    params_path = os.path.join(root, file_name + ".params")
    with file_lock(params_path):
        if os.path.exists(params_path):
            if file_sha1(params_path) == sha1:
                return params_path
            logger.warning("%s: sha1 mismatch, fetching it again", params_path)
        repo = _repo_url()
        repo_dir = _local_dir(repo)
        mirrors = [d for d in (os.environ.get("GLUON_BOF_MIRROR"), repo_dir) if d]
        for directory in mirrors:
            found = _find_in_mirror(os.path.expanduser(directory), file_name)
            if found:
                ok, actual = _extract(found, params_path, sha1)
                if not ok:
                    raise ModelStoreError(f"{found}: sha1 of {file_name}.params is {actual}, "
                                          f"expected {sha1}; replace the mirror's file")
                logger.info("copied %s from the mirror %s", file_name, found)
                return params_path
        if repo_dir is not None:
            raise ModelStoreError(f"{file_name}.zip/.params is not in the local repo {repo_dir} "
                                  f"(looked in gluon/models/ and the directory itself). "
                                  + _placement_hint(file_name, params_path, sha1))
        return _fetch(URL_FORMAT.format(repo=repo, file_name=file_name), params_path, sha1, file_name)


def _fetch(url: str, params_path: str, sha1: str, file_name: str) -> str:
    zip_path = os.path.join(os.path.dirname(params_path), file_name + ".zip")
    actual = ""
    for attempt in range(1, RETRIES + 1):
        try:
            download(url, zip_path, sha1=None, overwrite=True, retries=2, backoff=BACKOFF_S)
        except DownloadError as e:
            raise ModelStoreError(f"cannot download {file_name}.params: {e}. "
                                  + _placement_hint(file_name, params_path, sha1)) from None
        try:
            ok, actual = _extract(zip_path, params_path, sha1)
        finally:
            if os.path.exists(zip_path):
                os.remove(zip_path)
        if ok:
            return params_path
        logger.warning("%s (attempt %d/%d): sha1 %s, expected %s; deleted", url, attempt, RETRIES,
                       actual, sha1)
    raise ModelStoreError(f"{params_path}: the file downloaded from {url} has sha1 {actual}, "
                          f"expected {sha1} ({RETRIES} attempts; corrupted download or a wrong "
                          f"mirror). " + _placement_hint(file_name, params_path, sha1))


def load_pretrained(net, name: str, root: Optional[str] = None):
    """Loads GluonCV's pretrained weights for the zoo name ``name`` into ``net``; returns ``net``.

    The ``.params`` file comes from :func:`get_model_file`; it is converted once with
    :func:`~gluon_bof.model_zoo.gluoncv.load_gluoncv_params` and the torch state dict is cached
    as ``{name}-{hash8}.pth`` beside it, which later calls load directly.
    """
    params_path = get_model_file(name, root)
    cache = params_path[: -len(".params")] + ".pth"
    sha1 = _sha1_of(name)
    if os.path.exists(cache):
        try:
            blob = torch.load(cache, map_location="cpu", weights_only=True)
            if (blob.get("format") == CACHE_FORMAT and blob.get("sha1") == sha1
                    and blob.get("class") == type(net).__name__):
                net.load_state_dict(blob["state_dict"])
                return net
        except Exception as e:  # stale or damaged cache: convert again
            logger.warning("%s: unusable converted cache (%s); converting again", cache, e)
    load_gluoncv_params(net, params_path)
    atomic_save({"format": CACHE_FORMAT, "sha1": sha1, "class": type(net).__name__,
                 "state_dict": net.state_dict()}, cache)
    return net


def load_weights_file(net, path, model_name=None):
    """Loads a weights file into ``net``; returns ``net``. ``*.params``: GluonCV's format (see
    :func:`~gluon_bof.model_zoo.gluoncv.load_gluoncv_params`); ``*.safetensors``: our state-dict
    names (``scripts/convert_gluoncv.py``'s output, see :func:`load_safetensors`); otherwise a
    ``torch.save`` file
    holding a gluon-bof checkpoint (a dict with ``'model'``), ``{'state_dict': ...}`` or a plain
    state dict (a ``module.`` prefix from DistributedDataParallel is removed). Only load
    checkpoints you trust: a full checkpoint is unpickled.

    ``model_name``: the zoo name ``net`` was built as (e.g. ``'resnet50_v1d'`` for a detector's
    backbone). A checkpoint that records the same ``model_name`` (``scripts/train_imagenet.py``'s)
    may differ in its classifier head only (its own number of classes): the head is then skipped
    and the rest must fit exactly. A checkpoint of another architecture is an error naming both."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"weights file {path!r} does not exist")
    if path.endswith(".params"):
        load_gluoncv_params(net, path)
        return net
    if path.endswith(".safetensors"):
        return load_safetensors(net, path)
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # a full checkpoint (RNG states, settings) needs the unrestricted loader
        try:
            obj = torch.load(path, map_location="cpu", weights_only=False)
        except Exception as e:
            raise ValueError(f"{path}: not a torch checkpoint or state dict "
                             f"({type(e).__name__}: {e}); GluonCV files must end in .params") from e
    state = obj
    if isinstance(obj, dict):
        state = obj.get("model", obj.get("state_dict", obj))
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{path}: holds no state dict (expected a checkpoint dict with 'model', "
                         f"{{'state_dict': ...}} or name -> tensor)")
    if state and all(k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
    trained_as = obj.get("model_name") if isinstance(obj, dict) else None
    if model_name and trained_as and trained_as.lower() == model_name.lower():
        state = _without_other_head(net, state, path)
    own = net.state_dict()  # BatchNorm's step counters mean nothing to a frozen BatchNorm: dropped
    state = {k: v for k, v in state.items() if k in own or not k.endswith("num_batches_tracked")}
    problems = state_dict_problems(net, state)
    if problems:
        if model_name and trained_as and trained_as.lower() != model_name.lower():
            raise CheckpointError(f"{path}: holds a {trained_as!r} model (model_name in the checkpoint), which "
                                  f"does not fit this {model_name!r} network; nothing was loaded" + problems)
        raise CheckpointError(f"{path}: does not fit {type(net).__name__}; nothing was loaded" + problems)
    net.load_state_dict(state)
    return net


def _numpy_dtype(dtype: torch.dtype) -> np.dtype:
    """NumPy's name of a torch dtype (bfloat16, which NumPy lacks, as a 2-byte float)."""
    return np.dtype("float16") if dtype == torch.bfloat16 else np.dtype(str(dtype).replace("torch.", ""))


def state_dict_problems(net, state: dict) -> str:
    """Everything that keeps ``state`` from loading into ``net`` whole, as the lines of an error
    (empty when it fits): missing and unexpected keys, mis-shaped tensors, incompatible dtypes
    (:func:`~gluon_bof.model_zoo.gluoncv.dtype_fits`) and constants that differ from the ones the
    model was built with (YOLOv3's ``anchors``: a checkpoint of other anchors does not silently
    replace them). Checked before anything is copied, so a failed load changes nothing (torch's
    ``load_state_dict`` copies every fitting tensor before it reports the others)."""
    own = net.state_dict()
    missing = [k for k in own if k not in state and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in own]
    misshaped, mistyped, differ = [], [], []
    for k, v in state.items():
        if k not in own:
            continue
        if tuple(v.shape) != tuple(own[k].shape):
            misshaped.append(f"{k} (file {tuple(v.shape)}, model {tuple(own[k].shape)})")
        elif not dtype_fits(_numpy_dtype(v.dtype), own[k].dtype):
            mistyped.append(f"{k} (file {str(v.dtype).replace('torch.', '')}, "
                            f"model {str(own[k].dtype).replace('torch.', '')})")
        elif k.endswith(".anchors") and not torch.allclose(v.to(own[k]), own[k]):
            differ.append(f"{k} (file {v.reshape(-1).tolist()}, model {own[k].reshape(-1).tolist()}; build the "
                          f"model with these anchors: anchors=..., --anchor-scale)")
    return "".join(_listing(title, items) for title, items in (
        ("mis-shaped", misshaped), ("incompatible dtypes", mistyped), ("differing constants", differ),
        ("missing", missing), ("unexpected", unexpected)) if items)


def file_sha256(path: str) -> str:
    """The sha256 of a file's bytes (hex), read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(_CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def load_safetensors(net, path):
    """Loads a ``.safetensors`` file of ``net``'s state-dict names into ``net``, all or nothing;
    returns ``net``.

    If ``{path}.sha256`` lies beside it (``sha256sum`` format: the hex digest first), the file's
    sha256 must equal it. Every tensor must exist in ``net`` with its shape, and every tensor of
    ``net`` in the file (a BatchNorm's ``num_batches_tracked`` may be absent); otherwise
    :class:`~gluon_bof.errors.CheckpointError` names the file, the model it records
    (``gluon_bof_model`` metadata) and the missing, unexpected and mis-shaped tensors, and
    ``net`` is unchanged."""

    path = os.fspath(path)
    digest_file = path + ".sha256"
    if os.path.isfile(digest_file):
        with open(digest_file) as f:
            expected = (f.read().split() or [""])[0].lower()
        actual = file_sha256(path)
        if actual != expected:
            raise CheckpointError(f"{path}: sha256 is {actual}, but {digest_file} says {expected}: the "
                                  f"file is damaged or not the one published; fetch it again")
    try:
        with safe_open(path, framework="pt", device="cpu") as f:
            recorded = (f.metadata() or {}).get("gluon_bof_model")
            state = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"{path}: not a readable safetensors file ({type(e).__name__}: {e})") from None
    own = net.state_dict()
    missing = [k for k in own if k not in state and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in own]
    misshaped = [f"{k} (file {tuple(v.shape)}, model {tuple(own[k].shape)})"
                 for k, v in state.items() if k in own and v.shape != own[k].shape]
    if missing or unexpected or misshaped:
        what = f" (it records model {recorded!r})" if recorded else ""
        msg = f"{path}{what}: does not fit {type(net).__name__}; nothing was loaded."
        for title, items in (("mis-shaped", misshaped), ("missing", missing),
                             ("unexpected", unexpected)):
            if items:
                msg += _listing(title, items)
        raise CheckpointError(msg)
    net.load_state_dict({**own, **state}, strict=True)
    return net


def _without_other_head(net, state: dict, path: str) -> dict:
    """``state`` minus the classifier head (the last ``nn.Linear``) when only its shape differs from
    ``net``'s (a classifier trained on other classes, loaded as a backbone); ``net`` keeps its own."""

    linears = [name for name, m in net.named_modules() if isinstance(m, nn.Linear)]
    if not linears:
        return state
    head = linears[-1]
    own = net.state_dict()
    keys = [f"{head}.{p}" for p in ("weight", "bias") if f"{head}.{p}" in own]
    if keys and any(k in state and state[k].shape != own[k].shape for k in keys):
        logger.info("%s: classifier head %r has shape %s, the network's %s: not loaded", path, head,
                    tuple(state[keys[0]].shape), tuple(own[keys[0]].shape))
        state = dict(state)
        for k in keys:
            state[k] = own[k]
    return state


def purge(root: Optional[str] = None) -> None:
    """Removes the cached ``.params`` and converted ``.pth`` files (and lock files) under ``root``."""
    root = model_root(root)
    if os.path.isdir(root):
        for f in os.listdir(root):
            if f.endswith((".params", ".pth", ".lock")):
                os.remove(os.path.join(root, f))


def load_weights(net: nn.Module, weights, builder: str) -> nn.Module:
    """Loads pretrained weights into ``net`` (every family's builders call it); returns ``net``.

    ``weights``: False/None: nothing; True: GluonCV's weights for the zoo name ``builder``
    (e.g. ``'darknet53'``), fetched, verified and cached (:func:`load_pretrained`); a path: a
    GluonCV ``.params`` file (our names mirror GluonCV's, see :mod:`gluon_bof.model_zoo.gluoncv`),
    a ``.safetensors`` file or a gluon-bof checkpoint / state dict (``.pth``), see
    :func:`load_weights_file` (a classifier checkpoint of ``builder`` trained on other classes
    loads without its head).
    """
    if weights is None or weights is False:
        return net
    if weights is True:
        return load_pretrained(net, builder)
    return load_weights_file(net, weights, model_name=builder)
