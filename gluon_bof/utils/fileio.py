"""Atomic file writes: every file gluon-bof writes (checkpoints, .params, the zoo table, downloaded
weights) goes through :func:`atomic_open`, so a crash leaves the old file or the new one, never a
partial file."""
import os
import tempfile
from contextlib import contextmanager

__all__ = ["atomic_open"]


@contextmanager
def atomic_open(path, mode: str = "wb", fsync: bool = True, **kwargs):
    """Opens a temporary file beside ``path`` for writing; on a clean exit it is flushed, fsynced
    and renamed over ``path``; on an exception it is removed and ``path`` is left untouched.

    ``mode`` is 'wb' or 'w' (``kwargs`` go to ``open``, e.g. ``newline=''``). Missing parent
    directories are created.
    """
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=os.path.splitext(path)[1], dir=directory)
    try:
        with os.fdopen(fd, mode, **kwargs) as f:
            yield f
            f.flush()
            if fsync:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
