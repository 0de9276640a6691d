"""scripts/elephant_in_the_room.py end to end with tiny random-weight models: the files it writes
(the statistics themselves are checked by hand in tests/utils/test_elephant.py)."""
import json
import os

import cv2
import numpy as np
import pytest
import torch

import elephant_in_the_room
from gluon_bof.data.synthetic import CLASSES
from gluon_bof.model_zoo import get_model
from gluon_bof.training import save_model_checkpoint


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    out = tmp_path_factory.mktemp("ckpt")
    paths = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        kwargs = dict(classes=list(CLASSES), channels=[16, 8, 8])
        net = get_model("yolo3_mobilenet0.25_custom", **kwargs)
        path = str(out / f"tiny{seed}.pth")
        save_model_checkpoint(path, model=net, model_name="yolo3_mobilenet0.25_custom", model_kwargs=kwargs,
                        settings={"data_shape": 64})
        paths.append(path)
    return paths


def test_builtin_scene_two_models_writes_json_sheets_gif(checkpoints, synthetic_root, tmp_path, capsys):
    out = tmp_path / "out"
    summary = elephant_in_the_room.main(
        ["--models", *checkpoints, "--data-root", synthetic_root, "--scene-index", "0", "--num-scenes", "2",
         "--sizes", "0.3", "--grid", "2", "--gif", "--out", str(out)])
    assert summary["patch_class"] in CLASSES and not summary["alpha"]
    assert [r["model"] for r in summary["results"]] == ["tiny0.pth", "tiny1.pth"]
    saved = json.load(open(out / "elephant.json"))
    assert [len(b) for b in saved["frame_boxes"]] == [4, 4]  # two scenes x a 2x2 grid
    first = saved["results"][0]
    assert len(first["found"]) == 8 and first["frames"] == 8 and len(first["per_scene"]) == 2
    assert first["data_shape"] == 64  # recorded in the checkpoint
    for name in ("tiny0_sheet.png", "tiny1_sheet.png", "tiny0.gif", "scene0.png", "scene1.png", "patch.png"):
        assert os.path.getsize(out / name) > 500, name
    table = capsys.readouterr().out
    assert "recall of inserted object" in table and table.count("tiny") >= 2


def test_own_scene_and_alpha_patch(checkpoints, tmp_path):
    scene = tmp_path / "scene.jpg"
    cv2.imwrite(str(scene), np.full((90, 120, 3), 128, np.uint8))
    patch = tmp_path / "p.png"
    opaque_middle = np.pad(np.full((10, 10), 255, np.uint8), 5)
    cv2.imwrite(str(patch), np.dstack([np.full((20, 20, 3), 200, np.uint8), opaque_middle]))
    summary = elephant_in_the_room.main(
        ["--model", checkpoints[0], "--scene", str(scene), "--patch", str(patch), "--patch-class", "ring",
         "--sizes", "0.4", "--stride", "40", "--data-shape", "64", "--out", str(tmp_path / "o")])
    assert summary["alpha"] and summary["results"][0]["data_shape"] == 64
    # 36 px patch whose opaque part is its middle half: 18 px, from offset 9 in each 40-px step
    assert summary["frame_boxes"][0][:2] == [[9.0, 9.0, 27.0, 27.0], [49.0, 9.0, 67.0, 27.0]]
    with pytest.raises(SystemExit, match="not one of its classes"):
        elephant_in_the_room.main(["--model", checkpoints[0], "--scene", str(scene), "--patch", str(patch),
                                   "--patch-class", "elephant", "--out", str(tmp_path / "o")])
