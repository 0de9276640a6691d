"""Atomic file writes: every file gluon-bof writes (checkpoints, .params, the zoo table, downloaded
weights) goes through :func:`atomic_open`, so a crash leaves the old file or the new one, never a
partial file. A writer killed outright (SIGKILL, power loss) leaves its temporary file behind:
:func:`remove_stale_temporaries` deletes those at start-up."""
import glob
import logging
import os
import socket
import tempfile
import time
from contextlib import contextmanager

__all__ = ["atomic_open", "remove_stale_temporaries"]

logger = logging.getLogger(__name__)

_PREFIX = ".tmp-"
LEGACY_STALE_SECONDS = 3600.0  # temporaries without a writer id count as stale after an hour


def _umask() -> int:
    """The process's umask, read without changing it where Linux allows."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _writer_id() -> str:
    return f"{socket.gethostname().replace('-', '_')}-{os.getpid()}"


@contextmanager
def atomic_open(path, mode: str = "wb", fsync: bool = True, **kwargs):
    """Opens a temporary file beside ``path`` for writing; on a clean exit it is flushed, fsynced,
    given the permissions a plain ``open`` would give (0666 less the umask, not mkstemp's 0600)
    and renamed over ``path``; on an exception it is removed and ``path`` is left untouched.

    ``mode`` is 'wb' or 'w' (``kwargs`` go to ``open``, e.g. ``newline=''``). Missing parent
    directories are created. The temporary file is ``.tmp-<host>-<pid>-<name>-<random>``, so
    :func:`remove_stale_temporaries` can tell a dead writer's leftovers from a live one's.
    """
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f"{_PREFIX}{_writer_id()}-{os.path.basename(path)}-", suffix=".part",
                               dir=directory)
    try:
        with os.fdopen(fd, mode, **kwargs) as f:
            yield f
            f.flush()
            if fsync:
                os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def remove_stale_temporaries(directory: str) -> int:
    """Deletes the temporary files that killed writers left in ``directory``: those of this host
    whose writing process is gone, and older ones without a writer id (an hour after their last
    change). Others' files on a shared disk are left alone. Returns how many were removed (logged)."""
    if not os.path.isdir(directory):
        return 0
    host, removed = socket.gethostname().replace("-", "_"), 0
    for tmp in glob.glob(os.path.join(glob.escape(directory), _PREFIX + "*")):
        parts = os.path.basename(tmp)[len(_PREFIX):].split("-")
        try:
            if len(parts) >= 3 and parts[1].isdigit() and tmp.endswith(".part"):
                stale = parts[0] == host and not _alive(int(parts[1]))
            else:
                stale = time.time() - os.path.getmtime(tmp) > LEGACY_STALE_SECONDS
            if stale:
                os.remove(tmp)
                removed += 1
        except OSError:  # removed meanwhile, or not ours to remove
            continue
    if removed:
        logger.info("removed %d temporary file(s) that interrupted writes left in %s", removed, directory)
    return removed
