"""Prepare the ADE20K scene parsing data (GluonCV's scripts/datasets/ade20k.py).

    python scripts/datasets/ade20k.py [--root ~/.gluon_bof/datasets/ade] [--download-dir DIR]
        [--no-download] [--overwrite] [--mirror URL_OR_DIR] [--checksums FILE.json]
        [--only ADEChallengeData2016 release_test]

Downloads the official MIT Scene Parsing archives GluonCV lists (sha1s as GluonCV gives them):
ADEChallengeData2016.zip (about 923 MB: 20,210 training and 2,000 validation images with their
annotations) and release_test.zip (the 3,352 test images, no annotations; ``--only
ADEChallengeData2016`` skips it), verifies and extracts them into ``root``, so that
``ADE20KSegmentation(root, split)`` reads ``root/ADEChallengeData2016/{images,annotations}/
{training,validation}``. Interrupted downloads resume; finished archives are skipped on the next
run (markers in ``root/.prepared``); the archives stay in ``--download-dir`` (default
``root/downloads``). The default root is ``$GLUON_BOF_HOME/datasets/ade`` (``GLUON_BOF_HOME``
defaults to ``~/.gluon_bof``; GluonCV's is ``~/.mxnet/datasets/ade``).
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from gluon_bof.data.prepare import Archive, main as prepare_main  # noqa: E402
from gluon_bof.utils.cli import run_script  # noqa: E402

DEFAULT_ROOT = os.path.join(os.environ.get("GLUON_BOF_HOME", os.path.join("~", ".gluon_bof")),
                            "datasets", "ade")
_BASE = "http://data.csail.mit.edu/places/ADEchallenge/"
ARCHIVES = (
    Archive("ADEChallengeData2016", _BASE + "ADEChallengeData2016.zip",
            "219e1696abb36c8ba3a3afe7fb2f4b4606a897c7",
            expect=tuple(f"ADEChallengeData2016/{kind}/{split}" for kind in ("images", "annotations")
                         for split in ("training", "validation"))),
    Archive("release_test", _BASE + "release_test.zip", "e05747892219d10e9243933371a497e905a4860c"),
)


def main(argv=None) -> str:
    return prepare_main(ARCHIVES, DEFAULT_ROOT, __doc__, argv)


if __name__ == "__main__":
    run_script(main)
