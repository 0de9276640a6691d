"""scripts/datasets/ade20k.py: GluonCV's archives, extracted into the layout ADE20KSegmentation reads.

Small archives in the official layout are built from the generated segmentation data and served
from a local folder through ``--mirror``; ``--checksums`` gives their sha1s."""
import hashlib
import importlib.util
import json
import os
import zipfile

from gluon_bof.data.segmentation import ADE20KSegmentation
from gluon_bof.data.synthetic_segmentation import generate

SCRIPT = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                      "scripts", "datasets", "ade20k.py")


def _load():
    spec = importlib.util.spec_from_file_location("datasets_ade20k", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_archives_are_gluoncvs():
    """URLs and sha1s of GluonCV's scripts/datasets/ade20k.py (_AUG_DOWNLOAD_URLS)."""
    ade20k = _load()
    assert [(a.url, a.sha1) for a in ade20k.ARCHIVES] == [
        ("http://data.csail.mit.edu/places/ADEchallenge/ADEChallengeData2016.zip",
         "219e1696abb36c8ba3a3afe7fb2f4b4606a897c7"),
        ("http://data.csail.mit.edu/places/ADEchallenge/release_test.zip", "e05747892219d10e9243933371a497e905a4860c")]


def test_prepare_then_read_then_skip(tmp_path):
    ade20k = _load()
    gen = generate(str(tmp_path / "gen"), num_train=3, num_val=2, seed=5)
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    with zipfile.ZipFile(mirror / "ADEChallengeData2016.zip", "w") as zf:
        for dirpath, _, files in os.walk(os.path.join(gen, "ADEChallengeData2016")):
            for f in files:
                path = os.path.join(dirpath, f)
                zf.write(path, os.path.relpath(path, gen))
    with zipfile.ZipFile(mirror / "release_test.zip", "w") as zf:
        zf.writestr("release_test/testing/ADE_test_00000001.jpg", b"not checked")
    table = {f: hashlib.sha1((mirror / f).read_bytes()).hexdigest() for f in os.listdir(mirror)}
    (tmp_path / "ck.json").write_text(json.dumps(table))
    root = str(tmp_path / "ade")
    argv = ["--root", root, "--mirror", str(mirror), "--checksums", str(tmp_path / "ck.json"), "--quiet"]
    assert ade20k.main(argv) == root
    train, val = ADE20KSegmentation(root, "train"), ADE20KSegmentation(root, "val")
    assert (len(train), len(val), train.num_class) == (3, 2, 150)  # no classes.txt in the archive: ADE's 150
    assert train[0][1].shape == train[0][0].shape[:2]
    (mirror / "ADEChallengeData2016.zip").unlink()  # prepared: the second run fetches nothing
    assert ade20k.main(argv) == root
