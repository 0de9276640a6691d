"""Helpers shared by the detection datasets: errors, image reading and label validation.

Label contract (GluonCV's): float32 ``[N, 6]`` rows of ``xmin, ymin, xmax, ymax, class id,
difficult``, boxes XYXY in absolute pixels of the image they belong to.
"""
from __future__ import annotations

import io
import os
import warnings
from typing import List, Tuple

import cv2
import numpy as np

from ..errors import GluonBofError

__all__ = ["DatasetError", "LabelReport", "read_image", "decode_image", "EncodedImage", "read_encoded",
           "sanitize_label", "empty_label"]

LABEL_WIDTH = 6


class DatasetError(GluonBofError, ValueError):
    """Bad dataset input; the message names the file and what is wrong with it."""


def empty_label(width: int = LABEL_WIDTH) -> np.ndarray:
    """A float32 label with no rows, shape ``[0, width]``."""
    return np.zeros((0, width), dtype=np.float32)


def _looks_truncated(data: np.ndarray) -> bool:
    """True when a JPEG lacks its end-of-image marker or a PNG its IEND chunk.

    OpenCV decodes such files without complaint (the missing part comes out grey), so the check is
    made on the bytes. Inside JPEG entropy-coded data 0xFF is always followed by 0x00 or a restart
    marker, so a 0xFFD9 near the end can only be the real end-of-image marker.
    """
    head = data[:8].tobytes()
    tail = data[-4096:].tobytes()
    if head[:2] == b"\xff\xd8":
        return b"\xff\xd9" not in tail
    if head == b"\x89PNG\r\n\x1a\n":
        return b"IEND" not in tail
    return False


def read_image(path: str) -> np.ndarray:
    """Reads an image file as an ``HxWx3`` uint8 RGB array.

    Raises:
        DatasetError: naming ``path`` when the file is missing, unreadable, not a decodable
            image, or a truncated JPEG/PNG.
    """
    return decode_image(_read_bytes(path), path)


def _read_bytes(path: str) -> np.ndarray:
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except FileNotFoundError:
        raise DatasetError(f"{path}: image file not found") from None
    except OSError as e:
        raise DatasetError(f"{path}: cannot read image file ({e})") from None
    if data.size == 0:
        raise DatasetError(f"{path}: image file is empty")
    if _looks_truncated(data):
        raise DatasetError(f"{path}: image file is truncated (no end-of-image marker)")
    return data


# OpenCV >= 4.10 decodes straight to RGB (libjpeg-turbo writes RGB instead of BGR: the same pixels
# without the extra BGR -> RGB pass); older builds decode to BGR and convert.
_IMREAD_RGB = getattr(cv2, "IMREAD_COLOR_RGB", None)


def decode_image(data: np.ndarray, path: str = "<bytes>") -> np.ndarray:
    """Decodes an encoded image (uint8 buffer) as an ``HxWx3`` uint8 RGB array, applying the EXIF
    orientation as ``cv2.imread`` does. Raises DatasetError naming ``path`` when it is not an image."""
    img = cv2.imdecode(data, cv2.IMREAD_COLOR if _IMREAD_RGB is None else _IMREAD_RGB)
    if img is None:
        raise DatasetError(f"{path}: cannot decode image (corrupt or not an image file)")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB) if _IMREAD_RGB is None else img


class EncodedImage:
    """An image file read but not decoded (the device pipeline decodes it, with nvjpeg on CUDA).

    ``data``: the file's bytes, uint8 ``[n]``; ``shape``: ``(height, width, 3)`` of the decoded
    image, from the file's header; ``path``: for messages. ``decode()`` gives what
    :func:`read_image` gives."""

    __slots__ = ("data", "shape", "path")

    def __init__(self, data: np.ndarray, shape: Tuple[int, int, int], path: str = "<bytes>"):
        self.data, self.shape, self.path = data, tuple(shape), path

    def decode(self) -> np.ndarray:
        return decode_image(self.data, self.path)

    def __repr__(self) -> str:
        return f"EncodedImage({self.path}, {self.shape[1]}x{self.shape[0]})"


def read_encoded(path: str):
    """Reads an image file for decoding on the device: an :class:`EncodedImage` for a JPEG with
    one or three colour components and no EXIF rotation (what ``torchvision.io.decode_jpeg``
    decodes on CUDA and CPU exactly as OpenCV orients it); any other file (PNG, CMYK JPEG, an
    EXIF-rotated photo) is decoded here and comes back as an ``HxWx3`` uint8 RGB array, like
    :func:`read_image`. Raises DatasetError as :func:`read_image`."""
    from PIL import Image, UnidentifiedImageError

    data = _read_bytes(path)
    if data[:2].tobytes() == b"\xff\xd8":
        try:
            with Image.open(io.BytesIO(data.tobytes())) as im:  # parses the header only
                plain = im.mode in ("RGB", "L") and im.getexif().get(0x0112, 1) == 1
                width, height = im.size
        except (UnidentifiedImageError, OSError, SyntaxError):
            plain = False
        if plain:
            return EncodedImage(data, (height, width, 3), path)
    return decode_image(data, path)


def sanitize_label(label: np.ndarray, width: float, height: float) -> Tuple[np.ndarray, int, int]:
    """Clips boxes to the image and drops degenerate ones.

    Args:
        label: float array ``[N, 4+]`` whose first four columns are XYXY pixel boxes.
        width, height: image size in pixels; boxes are clipped to ``[0, width] x [0, height]``.

    Returns:
        ``(label, num_clipped, num_dropped)``: a float32 copy with the boxes clipped and the rows
        whose clipped box has zero or negative width or height (or non-finite numbers) removed;
        how many rows were changed by clipping (among those kept) and how many were dropped.
    """
    label = np.asarray(label, dtype=np.float32).copy()
    if label.shape[0] == 0:
        return label, 0, 0
    boxes = label[:, :4]
    finite = np.isfinite(boxes).all(axis=1)
    clipped = boxes.copy()
    clipped[:, 0::2] = np.clip(clipped[:, 0::2], 0, width)
    clipped[:, 1::2] = np.clip(clipped[:, 1::2], 0, height)
    keep = finite & (clipped[:, 2] > clipped[:, 0]) & (clipped[:, 3] > clipped[:, 1])
    changed = (clipped != boxes).any(axis=1) & keep
    label[:, :4] = clipped
    return label[keep], int(changed.sum()), int((~keep).sum())


class LabelReport:
    """Counts clipped and dropped boxes while a dataset is built, then warns once.

    Use ``add(file, num_clipped, num_dropped)`` per file and ``warn(name)`` at the end of
    construction; ``warn`` emits a single ``UserWarning`` with the totals and the first few files.
    """

    MAX_FILES = 5

    def __init__(self) -> None:
        self.num_clipped = 0
        self.num_dropped = 0
        self.clipped_files: List[str] = []
        self.dropped_files: List[str] = []

    def add(self, file: str, num_clipped: int, num_dropped: int) -> None:
        self.num_clipped += num_clipped
        self.num_dropped += num_dropped
        if num_clipped:
            self.clipped_files.append(file)
        if num_dropped:
            self.dropped_files.append(file)

    def message(self, name: str) -> str:
        parts = []
        if self.num_clipped:
            files = ", ".join(self.clipped_files[: self.MAX_FILES])
            more = "..." if len(self.clipped_files) > self.MAX_FILES else ""
            parts.append(f"clipped {self.num_clipped} box(es) that went outside their image "
                         f"in {len(self.clipped_files)} file(s) (e.g. {files}{more})")
        if self.num_dropped:
            files = ", ".join(self.dropped_files[: self.MAX_FILES])
            more = "..." if len(self.dropped_files) > self.MAX_FILES else ""
            parts.append(f"dropped {self.num_dropped} degenerate box(es) with zero or negative "
                         f"area after clipping in {len(self.dropped_files)} file(s) "
                         f"(e.g. {files}{more})")
        return f"{name}: " + "; ".join(parts)

    def warn(self, name: str) -> None:
        if self.num_clipped or self.num_dropped:
            warnings.warn(self.message(name), UserWarning, stacklevel=3)


def check_dir(path: str, what: str) -> str:
    """Returns ``path`` (user-expanded) or raises DatasetError when it is not a directory."""
    path = os.path.expanduser(path)
    if not os.path.isdir(path):
        raise DatasetError(f"{path}: {what} not found (no such directory)")
    return path
