"""Robust file download: resume, sha1 verification, retries, atomic rename, a per-file lock.

    from gluon_bof.utils.download import download, check_sha1, file_lock
    path = download("http://host/x.tar", "/data/downloads/x.tar", sha1="34ed6885...")

``download`` streams ``url`` to ``path + '.part'`` (tqdm progress bar on stderr), resumes an
existing ``.part`` with an HTTP ``Range`` request (a server that answers 200 instead of 206 is
read again from the start), verifies the sha1 and only then renames the file to ``path``, so
``path`` never holds a partial or unverified file. Connection errors, truncated transfers, 5xx
answers and (for HTTP) sha1 mismatches are retried (a mismatching file is deleted first); after the last try
it raises :class:`DownloadError` naming the file, the URL and (for a mismatch) both sha1s.
``file://`` URLs and plain local paths are copied the same way, so a mirror directory works.
Only the standard library (urllib) and tqdm are used; HTTP proxies come from the environment.

Concurrency: ``download`` holds :func:`file_lock` on ``path`` while it works, so two processes
asked for the same file download it once; the second finds the verified file and returns.
"""
from __future__ import annotations

import contextlib
import hashlib
import http.client
import os
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Iterator, Optional

from ..errors import GluonBofError

__all__ = ["DownloadError", "check_sha1", "download", "file_lock", "file_sha1"]

_USER_AGENT = "gluon-bof-download/1.0"
_RETRIABLE_HTTP = {408, 425, 429, 500, 502, 503, 504}


class DownloadError(GluonBofError, RuntimeError):
    """A download failed for good (after retries) or cannot succeed (e.g. HTTP 404)."""


class _Retry(Exception):
    """An attempt failed in a way another attempt may fix."""


def file_sha1(path: str, chunk: int = 1 << 20) -> str:
    """Hex sha1 of the file at ``path``, read in ``chunk``-byte pieces."""
    h = hashlib.sha1()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def _sha1_matches(actual: str, expected: str) -> bool:
    expected = expected.strip().lower()
    return bool(expected) and actual.startswith(expected)


def check_sha1(path: str, sha1: str) -> bool:
    """Whether the file at ``path`` has sha1 ``sha1`` (hex; a prefix such as the 8 characters
    in GluonCV's weight names is accepted, as GluonCV's ``check_sha1``)."""
    return _sha1_matches(file_sha1(path), sha1)


@contextlib.contextmanager
def file_lock(path: str) -> Iterator[None]:
    """Exclusive inter-process lock for ``path`` (``fcntl.flock`` on ``path + '.lock'``; blocks
    until free). The lock file is left in place (removing it would race with waiters). A no-op
    where ``fcntl`` is missing (Windows)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover
        yield
        return
    lock_path = os.path.abspath(path) + ".lock"
    os.makedirs(os.path.dirname(lock_path), exist_ok=True)
    with open(lock_path, "a") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


def _local_source(url: str) -> Optional[str]:
    """The local file a ``file://`` URL or plain path names, else None."""
    parsed = urllib.parse.urlparse(url)
    if parsed.scheme == "file":
        return urllib.request.url2pathname(parsed.path)
    if not parsed.scheme:
        return os.path.expanduser(url)
    return None


def _progress(total: Optional[int], initial: int, name: str, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, unit="B", unit_scale=True, unit_divisor=1024,
                desc=name, disable=not enabled, dynamic_ncols=True)


def _copy_local(src: str, part: str, url: str, progress: bool, chunk: int) -> None:
    if not os.path.isfile(src):
        raise DownloadError(f"{url}: no such file {src!r}")
    with open(src, "rb") as fin, open(part, "wb") as fout, \
            _progress(os.path.getsize(src), 0, os.path.basename(part[:-5]), progress) as bar:
        for block in iter(lambda: fin.read(chunk), b""):
            fout.write(block)
            bar.update(len(block))


def _fetch_http(url: str, part: str, resume: bool, progress: bool, chunk: int, timeout: float) -> None:
    """One HTTP(S) attempt into ``part`` (appending after a partial file when the server allows)."""
    offset = os.path.getsize(part) if resume and os.path.exists(part) else 0
    headers = {"User-Agent": _USER_AGENT, "Accept-Encoding": "identity"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    try:
        resp = urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)
    except urllib.error.HTTPError as e:
        if e.code == 416 and offset:  # range not satisfiable
            if e.headers.get("Content-Range", "").split("/")[-1] == str(offset):
                return  # the partial file is already complete
            os.remove(part)
            raise _Retry(f"HTTP 416 for a resumed request, restarting {url}") from None
        if e.code in _RETRIABLE_HTTP:
            raise _Retry(f"HTTP {e.code} {e.reason} for {url}") from None
        raise DownloadError(f"{url}: HTTP {e.code} {e.reason}") from None
    with resp:
        if resp.status == 206:
            start = resp.headers.get("Content-Range", "").split(" ")[-1].split("-")[0]
            if not start.isdigit() or int(start) != offset:
                raise _Retry(f"{url}: server answered Range bytes={offset}- with "
                             f"Content-Range {resp.headers.get('Content-Range')!r}")
            mode = "ab"
        else:  # 200: the whole file (the server ignored or does not support Range)
            offset, mode = 0, "wb"
        length = resp.headers.get("Content-Length")
        expected = int(length) if length and length.isdigit() else None
        received = 0
        with open(part, mode) as f, _progress(None if expected is None else offset + expected, offset,
                                              os.path.basename(part[:-5]), progress) as bar:
            while True:
                block = resp.read(chunk)
                if not block:
                    break
                f.write(block)
                received += len(block)
                bar.update(len(block))
        if expected is not None and received != expected:
            raise _Retry(f"{url}: connection closed after {received} of {expected} bytes")


def download(url: str, path: str, sha1: Optional[str] = None, overwrite: bool = False,
             retries: int = 3, resume: bool = True, progress: bool = True, chunk: int = 1 << 20,
             timeout: float = 60, backoff: float = 1.0) -> str:
    """Downloads ``url`` to ``path`` and returns ``path``.

    Args:
        url: ``http(s)://``, ``file://`` or a plain local path (copied).
        path: destination file; if it is an existing directory, the URL's file name inside it.
        sha1: expected hex sha1 (or a prefix of it); None skips verification.
        overwrite: download again even if ``path`` exists (a partial ``.part`` is discarded too).
        retries: how many times a failed attempt is retried (at most ``retries + 1`` attempts).
        resume: continue an existing ``path + '.part'`` with a ``Range`` request.
        progress: show a tqdm progress bar.
        chunk: read/write and hashing block size in bytes.
        timeout: socket timeout in seconds for connecting and for each read.
        backoff: seconds to wait before retry ``k`` are ``backoff * 2 ** (k - 1)`` (capped at 30).

    Skips the download when ``path`` exists and its sha1 matches, or when no ``sha1`` is given,
    ``path`` exists and ``overwrite`` is False. Raises :class:`DownloadError` when every attempt
    failed (the message names the file, the URL and, for a checksum mismatch, both sha1s) or at
    once for an error that retrying cannot fix (HTTP 404, a missing local file).
    """
    path, retries = os.path.expanduser(path), max(0, int(retries))
    if os.path.isdir(path):
        path = os.path.join(path, os.path.basename(urllib.parse.urlparse(url).path))
    part = path + ".part"
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with file_lock(path):
        if os.path.exists(path) and not overwrite:
            if sha1 is None or check_sha1(path, sha1):
                return path
        if overwrite and os.path.exists(part):
            os.remove(part)
        src = _local_source(url)
        failure = ""
        for attempt in range(retries + 1):
            if attempt:
                time.sleep(min(backoff * 2 ** (attempt - 1), 30.0))
            try:
                if src is not None:
                    _copy_local(src, part, url, progress, chunk)
                else:
                    _fetch_http(url, part, resume, progress, chunk, timeout)
            except _Retry as e:
                failure = str(e)
                continue
            except (urllib.error.URLError, http.client.HTTPException, OSError) as e:
                failure = f"{type(e).__name__}: {e}"
                continue  # the .part stays for the next attempt to resume
            if sha1 is not None:
                actual = file_sha1(part, chunk)
                if not _sha1_matches(actual, sha1):
                    os.remove(part)
                    failure = (f"sha1 mismatch: expected {sha1}, got {actual} "
                               f"(download incomplete or corrupted, or the file changed upstream)")
                    if src is not None:
                        break  # a local copy gives the same bytes again
                    continue
            os.replace(part, path)
            return path
        raise DownloadError(f"failed to download {path} from {url} after {attempt + 1} "
                            f"attempt(s): {failure}")
