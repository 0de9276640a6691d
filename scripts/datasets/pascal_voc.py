"""Prepare the PASCAL VOC 2007 + 2012 detection data (GluonCV's scripts/datasets/pascal_voc.py).

    python scripts/datasets/pascal_voc.py [--root ~/.gluon_bof/datasets/voc] [--download-dir DIR]
        [--no-download] [--overwrite] [--mirror URL_OR_DIR] [--checksums FILE.json]
        [--only VOC2007-trainval VOC2007-test VOC2012-trainval]

Downloads the three official tars (about 2.8 GB; sha1s as GluonCV lists them), verifies them and
extracts them without the tars' ``VOCdevkit/`` folder, so that ``VOCDetection(root)`` reads
``root/VOC2007/...`` and ``root/VOC2012/...`` (the 2007 test tar carries its annotations).
Interrupted downloads resume; finished archives are skipped on the next run (markers in
``root/.prepared``); the archives stay in ``--download-dir`` (default ``root/downloads``). The
default root is ``$GLUON_BOF_HOME/datasets/voc`` (``GLUON_BOF_HOME`` defaults to ``~/.gluon_bof``).
GluonCV's script also fetched the VOCaug segmentation set; detection does not need it.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from gluon_bof.data.prepare import Archive, main as prepare_main  # noqa: E402
from gluon_bof.utils.cli import run_script  # noqa: E402

DEFAULT_ROOT = os.path.join(os.environ.get("GLUON_BOF_HOME", os.path.join("~", ".gluon_bof")),
                            "datasets", "voc")
_BASE = "http://host.robots.ox.ac.uk/pascal/VOC/"
ARCHIVES = (
    Archive("VOC2007-trainval", _BASE + "voc2007/VOCtrainval_06-Nov-2007.tar",
            "34ed68851bce2a36e2a223fa52c661d592c66b3c", strip="VOCdevkit",
            expect=("VOC2007/ImageSets/Main/trainval.txt",)),
    Archive("VOC2007-test", _BASE + "voc2007/VOCtest_06-Nov-2007.tar",
            "41a8d6e12baa5ab18ee7f8f8029b9e11805b4ef1", strip="VOCdevkit",
            expect=("VOC2007/ImageSets/Main/test.txt",)),
    Archive("VOC2012-trainval", _BASE + "voc2012/VOCtrainval_11-May-2012.tar",
            "4e443f8a2eca6b1dac8a6c57641b67dd40621a49", strip="VOCdevkit",
            expect=("VOC2012/ImageSets/Main/trainval.txt",)),
)


def main(argv=None) -> str:
    return prepare_main(ARCHIVES, DEFAULT_ROOT, __doc__, argv)


if __name__ == "__main__":
    run_script(main)
