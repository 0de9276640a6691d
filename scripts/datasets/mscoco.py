"""Prepare the MS COCO 2017 detection data (GluonCV's scripts/datasets/mscoco.py).

    python scripts/datasets/mscoco.py [--root ~/.gluon_bof/datasets/coco] [--download-dir DIR]
        [--no-download] [--overwrite] [--mirror URL_OR_DIR] [--checksums FILE.json]
        [--only train2017 val2017 annotations]

Downloads the official train2017.zip, val2017.zip and annotations_trainval2017.zip (about 19 GB;
sha1s as GluonCV lists them), verifies and extracts them, so that ``COCODetection(root)`` reads
``root/annotations/instances_{train,val}2017.json``, ``root/train2017/`` and ``root/val2017/``.
Interrupted downloads resume; finished archives are skipped on the next run (markers in
``root/.prepared``); the archives stay in ``--download-dir`` (default ``root/downloads``). The
default root is ``$GLUON_BOF_HOME/datasets/coco`` (``GLUON_BOF_HOME`` defaults to ``~/.gluon_bof``).
For evaluation only, ``--only val2017 annotations`` skips the 18 GB training images.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from gluon_bof.data.prepare import Archive, main as prepare_main  # noqa: E402
from gluon_bof.utils.cli import run_script  # noqa: E402

DEFAULT_ROOT = os.path.join(os.environ.get("GLUON_BOF_HOME", os.path.join("~", ".gluon_bof")),
                            "datasets", "coco")
_BASE = "http://images.cocodataset.org/"
ARCHIVES = (
    Archive("train2017", _BASE + "zips/train2017.zip",
            "10ad623668ab00c62c096f0ed636d6aff41faca5", expect=("train2017",)),
    Archive("val2017", _BASE + "zips/val2017.zip",
            "4950dc9d00dbe1c933ee0170f5797584351d2a41", expect=("val2017",)),
    Archive("annotations", _BASE + "annotations/annotations_trainval2017.zip",
            "8551ee4bb5860311e79dace7e79cb91e432e78b3",
            expect=("annotations/instances_train2017.json", "annotations/instances_val2017.json")),
)


def main(argv=None) -> str:
    return prepare_main(ARCHIVES, DEFAULT_ROOT, __doc__, argv)


if __name__ == "__main__":
    run_script(main)
