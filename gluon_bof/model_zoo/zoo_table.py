"""The zoo table (``zoo.csv`` beside this module, package data; described in model_zoo/README.md at
the repository root): read, update, render as Markdown.

One row per model and evaluation setting (a model evaluated at 320 and 416 has two rows); the
key is ``(name, gluoncv_metric)``. Columns (see ``model_zoo/README.md``)::

    name, architecture, dataset, gluoncv_sha1, gluoncv_metric, gluoncv_published, paper,
    command, measured, measured_note

``measured`` stays empty until ``scripts/benchmark_zoo.py --write`` measured it here;
``measured_note`` then records the date, the command and the data.
"""
from __future__ import annotations

import csv
import io
import os
from typing import Dict, List, Optional, Sequence

from ..utils.fileio import atomic_open

__all__ = ["COLUMNS", "DEFAULT_TABLE", "read_table", "write_table", "find_row", "metric_name",
           "to_markdown"]

COLUMNS = ("name", "architecture", "dataset", "gluoncv_sha1", "gluoncv_metric", "gluoncv_published",
           "paper", "command", "measured", "measured_note")
DEFAULT_TABLE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "zoo.csv")

Row = Dict[str, str]


def read_table(path: Optional[str] = None) -> List[Row]:
    """Rows of the zoo table as dicts (all values strings; missing cells are ``''``)."""
    path = path or DEFAULT_TABLE
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        missing = [c for c in COLUMNS if c not in (reader.fieldnames or ())]
        if missing:
            raise ValueError(f"{path}: zoo table lacks the column(s) {', '.join(missing)}")
        rows = [{c: (row.get(c) or "").strip() for c in COLUMNS} for row in reader]
    seen = set()
    for i, row in enumerate(rows, start=2):
        key = (row["name"], row["gluoncv_metric"])
        if not row["name"]:
            raise ValueError(f"{path}:{i}: row without a name")
        if key in seen:
            raise ValueError(f"{path}:{i}: {key} appears twice")
        seen.add(key)
    return rows


def write_table(rows: Sequence[Row], path: Optional[str] = None) -> None:
    """Writes ``rows`` (columns :data:`COLUMNS`, in that order) atomically to ``path``."""
    path = path or DEFAULT_TABLE
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({c: row.get(c, "") for c in COLUMNS})
    with atomic_open(path, "w", newline="") as f:
        f.write(buf.getvalue())


def metric_name(dataset: str, data_shape: int) -> str:
    """The ``gluoncv_metric`` text for a detector evaluated on ``dataset`` at ``data_shape``."""
    if dataset == "voc":
        return f"VOC07 mAP@0.5 @{data_shape}"
    if dataset == "coco":
        return f"COCO AP@[.5:.95] @{data_shape}"
    raise ValueError(f"unknown dataset {dataset!r} (voc or coco)")


def find_row(rows: Sequence[Row], name: str, metric: str) -> Optional[Row]:
    """The row for ``(name, metric)`` (names compare case-insensitively), or None."""
    for row in rows:
        if row["name"].lower() == name.lower() and row["gluoncv_metric"] == metric:
            return row
    return None


def _cell(text: str) -> str:
    text = text.replace("|", "\\|")
    return f"`{text}`" if text.startswith(("python ", "torchrun ")) else text


def to_markdown(rows: Sequence[Row], columns: Sequence[str] = ("name", "dataset", "gluoncv_metric",
                                                                "gluoncv_published", "paper",
                                                                "measured")) -> str:
    """A Markdown table of ``rows`` with ``columns``; empty cells show as ``-``."""
    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    for row in rows:
        lines.append("| " + " | ".join(_cell(row.get(c, "")) or "-" for c in columns) + " |")
    return "\n".join(lines) + "\n"
