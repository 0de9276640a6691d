"""Download, verify and extract published dataset archives (used by ``scripts/datasets/*.py``).

Each dataset script lists its archives as :class:`Archive` entries (URL, sha1, the folder to strip
from member paths, paths that must come out) and calls :func:`main` (command line) or
:func:`prepare` (library). For every archive, :func:`prepare`:

1. skips it when ``root/.prepared/<file>.json`` (written after a verified extraction) exists, its
   sha1 is the expected one and the archive's ``expect`` paths are still there;
2. fetches it into ``download_dir`` with :func:`gluon_bof.utils.download.download` (resumes a
   ``.part``, verifies the sha1, re-downloads a mismatching file, retries) unless it is already
   there with the right sha1 (``--download-dir`` reuses archives fetched elsewhere);
3. extracts it safely (:func:`safe_extract`: no absolute paths, no ``..``, no links or devices; a
   truncated or corrupted archive is an error naming it) into ``root/.extract-<file>``, checks the
   ``expect`` paths, then moves the files into ``root`` and writes the marker.

URL and checksum overrides (mirrors, tests): ``mirror`` replaces each URL's directory (an
``http(s)://`` or ``file://`` base URL or a local directory); ``checksums`` maps an archive's file
name (or its ``name``) to its sha1, or to None to skip verification (other keys are ignored).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import stat
import sys
import tarfile
import time
import urllib.parse
import zipfile
import zlib
from dataclasses import dataclass
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

from ..errors import GluonBofError
from ..utils.download import DownloadError, check_sha1, download, file_lock

__all__ = ["Archive", "PrepareError", "load_checksums", "main", "prepare", "safe_extract"]

_MARKERS = ".prepared"


class PrepareError(GluonBofError, RuntimeError):
    """An archive could not be fetched, verified or extracted; the message names the archive."""


@dataclass(frozen=True)
class Archive:
    """One published archive of a dataset.

    Attributes:
        name: short key (``--only`` picks by it), e.g. ``'VOC2007-trainval'``.
        url: official download URL; its last path component is the archive's file name.
        sha1: expected hex sha1 (None: not verified).
        strip: leading folder removed from member paths (``'VOCdevkit'`` for the VOC tars).
        expect: paths, relative to the dataset root, that the archive must provide.
    """
    name: str
    url: str
    sha1: Optional[str]
    strip: str = ""
    expect: Tuple[str, ...] = ()

    @property
    def filename(self) -> str:
        return os.path.basename(urllib.parse.urlparse(self.url).path)


def load_checksums(path: str) -> Dict[str, Optional[str]]:
    """Reads a JSON object ``{archive file name or name: hex sha1 or null}``."""
    try:
        with open(os.path.expanduser(path), "r", encoding="utf-8") as f:
            table = json.load(f)
    except (OSError, json.JSONDecodeError) as e:
        raise PrepareError(f"{path}: cannot read the checksum file ({e})") from None
    if not isinstance(table, dict) or not all(
            v is None or (isinstance(v, str) and re.fullmatch(r"[0-9a-fA-F]{8,40}", v))
            for v in table.values()):
        raise PrepareError(f"{path}: expected a JSON object mapping archive names to hex sha1 "
                           f"strings (or null)")
    return table


def _source(archive: Archive, mirror: Optional[str]) -> str:
    if not mirror:
        return archive.url
    if urllib.parse.urlparse(mirror).scheme:
        return mirror.rstrip("/") + "/" + archive.filename
    return os.path.join(os.path.expanduser(mirror), archive.filename)


# ------------------------------------------------------------------------------------- extraction
def _target_parts(name: str, strip: str, archive: str) -> List[str]:
    """Path components of member ``name`` after ``strip``; rejects unsafe names."""
    norm = name.replace("\\", "/")
    if norm.startswith("/") or re.match(r"^[A-Za-z]:", norm):
        raise PrepareError(f"{archive}: unsafe member {name!r} (absolute path); refusing to extract")
    parts = [p for p in norm.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise PrepareError(f"{archive}: unsafe member {name!r} (path leaves the target folder); "
                           f"refusing to extract")
    if strip and parts and parts[0] == strip:
        parts = parts[1:]
    return parts


def _write(src, dest: str, parts: List[str]) -> None:
    target = os.path.join(dest, *parts)
    os.makedirs(os.path.dirname(target), exist_ok=True)
    with open(target, "wb") as f:
        shutil.copyfileobj(src, f, 1 << 20)


def _extract_tar(path: str, dest: str, strip: str) -> int:
    count = 0
    with tarfile.open(path, "r:*") as tar:
        for m in tar:
            parts = _target_parts(m.name, strip, path)
            if m.isdir():
                os.makedirs(os.path.join(dest, *parts), exist_ok=True)
            elif m.isfile():
                if not parts:
                    raise PrepareError(f"{path}: member {m.name!r} has no file name")
                _write(tar.extractfile(m), dest, parts)
                count += 1
            else:
                raise PrepareError(f"{path}: member {m.name!r} is a link or special file; "
                                   f"refusing to extract")
        end = tar.offset
    with open(path, "rb") as f:  # plain tar: the members must be followed by an end-of-archive block
        magic = f.read(6)
        if not (magic[:2] == b"\x1f\x8b" or magic[:3] == b"BZh" or magic == b"\xfd7zXZ\x00"):
            f.seek(end)
            block = f.read(512)
            if len(block) < 512 or block.count(0) != 512:
                raise tarfile.ReadError("no end-of-archive marker (file cut short)")
    return count


def _extract_zip(path: str, dest: str, strip: str) -> int:
    count = 0
    with zipfile.ZipFile(path) as zf:
        for info in zf.infolist():
            parts = _target_parts(info.filename, strip, path)
            mode = info.external_attr >> 16
            if info.is_dir():
                os.makedirs(os.path.join(dest, *parts), exist_ok=True)
            elif stat.S_IFMT(mode) not in (0, stat.S_IFREG):
                raise PrepareError(f"{path}: member {info.filename!r} is a link or special file; "
                                   f"refusing to extract")
            else:
                with zf.open(info) as src:  # checks the CRC at the end
                    _write(src, dest, parts)
                count += 1
    return count


def safe_extract(path: str, dest: str, strip: str = "") -> int:
    """Extracts the tar (plain or compressed) or zip archive ``path`` into ``dest`` and returns
    the number of files written. Regular files and folders only; a member with an absolute path or
    ``..``, a link or a device is an error, as is a truncated or corrupted archive (all
    :class:`PrepareError` naming ``path``). ``strip`` removes that leading folder from members."""
    try:
        if path.lower().endswith(".zip") or zipfile.is_zipfile(path):
            return _extract_zip(path, dest, strip)
        return _extract_tar(path, dest, strip)
    except (tarfile.TarError, zipfile.BadZipFile, EOFError, zlib.error, ValueError) as e:
        raise PrepareError(f"{path}: the archive is truncated or corrupted ({e}); delete it or "
                           f"run again with --overwrite to download it again") from None


def _merge(src: str, dest: str) -> None:
    """Moves every file under ``src`` to the same place under ``dest`` (replacing), then deletes ``src``."""
    for dirpath, _, files in os.walk(src):
        out = os.path.join(dest, os.path.relpath(dirpath, src))
        os.makedirs(out, exist_ok=True)
        for name in files:
            os.replace(os.path.join(dirpath, name), os.path.join(out, name))
    shutil.rmtree(src)


# --------------------------------------------------------------------------------------- prepare
def _is_done(marker: str, archive: Archive, sha1: Optional[str], root: str) -> bool:
    if not os.path.isfile(marker):
        return False
    try:
        with open(marker, "r", encoding="utf-8") as f:
            done = json.load(f)
    except (OSError, json.JSONDecodeError):
        return False
    return (done.get("sha1") == sha1
            and all(os.path.exists(os.path.join(root, p)) for p in archive.expect))


def _fetch(archive: Archive, sha1: Optional[str], local: str, mirror: Optional[str],
           overwrite: bool, no_download: bool, retries: int, progress: bool) -> None:
    if no_download:
        if not os.path.isfile(local):
            raise PrepareError(f"{archive.filename}: not found at {local} and downloads are "
                               f"disabled (--no-download)")
        if sha1 is not None and not check_sha1(local, sha1):
            raise PrepareError(f"{local}: sha1 mismatch (expected {sha1}); the archive is "
                               f"incomplete or corrupted and downloads are disabled (--no-download)")
        return
    try:
        download(_source(archive, mirror), local, sha1=sha1, overwrite=overwrite, retries=retries,
                 progress=progress)
    except DownloadError as e:
        raise PrepareError(f"{archive.filename}: {e}") from None


def prepare(archives: Sequence[Archive], root: str, download_dir: Optional[str] = None,
            mirror: Optional[str] = None, checksums: Optional[Mapping[str, Optional[str]]] = None,
            overwrite: bool = False, no_download: bool = False, retries: int = 3,
            progress: bool = True) -> str:
    """Fetches, verifies and extracts ``archives`` into ``root`` (see the module docstring);
    returns ``root``. ``download_dir`` (default ``root/downloads``) keeps the archives;
    ``overwrite`` downloads and extracts everything again; ``no_download`` only uses archives
    already in ``download_dir``. Raises :class:`PrepareError` naming the failing archive."""
    root = os.path.abspath(os.path.expanduser(root))
    download_dir = os.path.abspath(os.path.expanduser(download_dir or os.path.join(root, "downloads")))
    checksums = dict(checksums or {})
    os.makedirs(os.path.join(root, _MARKERS), exist_ok=True)
    for archive in archives:
        sha1 = checksums.get(archive.filename, checksums.get(archive.name, archive.sha1))
        marker = os.path.join(root, _MARKERS, archive.filename + ".json")
        with file_lock(marker):
            if not overwrite and _is_done(marker, archive, sha1, root):
                if progress:
                    print(f"{archive.filename}: already prepared in {root}")
                continue
            local = os.path.join(download_dir, archive.filename)
            _fetch(archive, sha1, local, mirror, overwrite, no_download, retries, progress)
            tmp = os.path.join(root, ".extract-" + archive.filename)
            shutil.rmtree(tmp, ignore_errors=True)
            if progress:
                print(f"{archive.filename}: extracting into {root}")
            try:
                count = safe_extract(local, tmp, archive.strip)
                missing = [p for p in archive.expect if not os.path.exists(os.path.join(tmp, p))]
                if missing:
                    raise PrepareError(f"{local}: the archive lacks {missing} (a wrong file?)")
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
            _merge(tmp, root)
            with open(marker + ".tmp", "w", encoding="utf-8") as f:
                json.dump({"url": archive.url, "sha1": sha1, "files": count,
                           "time": time.strftime("%Y-%m-%d %H:%M:%S")}, f)
            os.replace(marker + ".tmp", marker)
    return root


def main(archives: Sequence[Archive], default_root: str, description: str,
         argv: Optional[Sequence[str]] = None) -> str:
    """The command line shared by ``scripts/datasets/*.py`` (GluonCV's flags plus ours)."""
    p = argparse.ArgumentParser(description=description,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--root", default=default_root, help=f"dataset folder (default {default_root})")
    p.add_argument("--download-dir", default=None,
                   help="folder for the archives; archives already there are reused "
                        "(default ROOT/downloads)")
    p.add_argument("--no-download", action="store_true",
                   help="fetch nothing; use the archives already in --download-dir")
    p.add_argument("--overwrite", action="store_true",
                   help="download and extract again, in case files are corrupted")
    p.add_argument("--mirror", default=None,
                   help="base URL (http(s)://, file://) or folder holding the archives under "
                        "their official file names")
    p.add_argument("--checksums", default=None,
                   help="JSON file {archive file name: sha1 or null} overriding the built-in sha1s")
    p.add_argument("--only", nargs="+", default=None, choices=[a.name for a in archives],
                   help="prepare only these archives")
    p.add_argument("--retries", type=int, default=3, help="retries per download")
    p.add_argument("--quiet", action="store_true", help="no progress bars or messages")
    args = p.parse_args(argv)
    chosen = [a for a in archives if args.only is None or a.name in args.only]
    checksums = load_checksums(args.checksums) if args.checksums else None
    unknown = sorted(set(checksums or ()) - {a.filename for a in archives} - {a.name for a in archives})
    if unknown:
        print(f"warning: {args.checksums}: ignoring checksums of unknown archives {unknown}",
              file=sys.stderr)
    root = prepare(chosen, args.root, download_dir=args.download_dir, mirror=args.mirror,
                   checksums=checksums, overwrite=args.overwrite, no_download=args.no_download,
                   retries=args.retries, progress=not args.quiet)
    if not args.quiet:
        print(f"done: {', '.join(a.name for a in chosen)} in {root}")
    return root
