"""gluon_bof/experiments/elephant.py: frames, pasting, and the two statistics on a hand-counted case.

The hand-counted case: a 128x128 scene (a crop of a built-in generated image), a 32x32 orange star
patch (RGBA, so the alpha path is used) on a 4x4 grid -> 16 frames at x0, y0 in {0, 32, 64, 96}
(grid cell (px, py) = (x0 / 32, y0 / 32)). A stub detector finds the orange pixels itself and:
  * reports the patch (class 3, score .9) only when the patch is in the left half (px in {0, 1}),
    except at (1, 3) with score .4 (under the threshold) and at (0, 2) with its box 20 px off
    (IoU .23): recall = (8 - 2) / 16 = 6/16;
  * always reports clean objects #0 (class 0, box 4,4,20,20), #1 (class 1, 100,100,124,124) and
    #2 (class 2, 66,2,90,26); drops #2 when the patch box is within 12 px of it, i.e. at
    px in {1, 2, 3} and py in {0, 1} (6 frames), and reports #0 as class 5 at (0, 3);
  * the patch covers #0 at (0, 0), #1 at (3, 3) and #2 at (2, 0): those pairs are not counted, so
    each object counts 15 frames (45 pairs); lost: #0 once ((0, 3)), #1 never, #2 in 5 frames
    ((2, 0) is covered): share = 6 / 45.
"""
import cv2
import numpy as np
import pytest
import torch
from torch import nn

from gluon_bof.data.synthetic import render_image
from gluon_bof.evaluation import detect_images
from gluon_bof.experiments import elephant

ORANGE = (255, 128, 0)
OBJECTS = [(0, (4, 4, 20, 20)), (1, (100, 100, 124, 124)), (2, (66, 2, 90, 26))]


class StubDetector(nn.Module):
    """Honours ``ids, scores, bboxes = net(x)`` ([B, 8, 1], [B, 8, 1], [B, 8, 4], padded -1)."""

    def forward(self, x):
        # ImageNet-normalised orange: R 2.25, G 0.21, B -1.80
        mask = (x[:, 0] > 2.1) & ((x[:, 1] - 0.205).abs() < 0.15) & (x[:, 2] < -1.7)
        ids, scores, boxes = -torch.ones(len(x), 8, 1), -torch.ones(len(x), 8, 1), -torch.ones(len(x), 8, 4)
        for b in range(len(x)):
            dets = [(c, 0.9, box) for c, box in OBJECTS]
            if mask[b].any():
                rows, cols = torch.nonzero(mask[b].any(1))[:, 0], torch.nonzero(mask[b].any(0))[:, 0]
                pbox = (int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1)
                px, py = round(pbox[0] / 32), round(pbox[1] / 32)
                gap = max(66 - pbox[2], pbox[0] - 90, 2 - pbox[3], pbox[1] - 26, 0)
                if gap <= 12:
                    dets = [d for d in dets if d[0] != 2]
                if (px, py) == (0, 3):
                    dets[0] = (5, 0.9, OBJECTS[0][1])
                if px <= 1:
                    score = 0.4 if (px, py) == (1, 3) else 0.9
                    shift = 20 if (px, py) == (0, 2) else 0
                    dets.append((3, score, (pbox[0] + shift, pbox[1], pbox[2] + shift, pbox[3])))
            for k, (c, s, box) in enumerate(dets):
                ids[b, k, 0], scores[b, k, 0], boxes[b, k] = c, s, torch.tensor(box, dtype=torch.float32)
        return ids, scores, boxes


@pytest.fixture(scope="module")
def scene_and_patch(tmp_path_factory):
    scene = np.ascontiguousarray(render_image(np.random.default_rng([7, 0, 0]))[0][:128, :128])
    star = np.zeros((40, 40), np.uint8)
    a = np.deg2rad(-90 + 36 * np.arange(10))
    r = np.where(np.arange(10) % 2 == 0, 19.5, 8.0)
    cv2.fillPoly(star, [np.round(np.stack([19.5 + r * np.cos(a), 19.5 + r * np.sin(a)], 1) * 16).astype(np.int32)],
                 255, cv2.LINE_AA, 4)
    rgba = np.dstack([np.full((40, 40, 3), ORANGE[::-1], np.uint8), star])  # BGRA for OpenCV
    path = str(tmp_path_factory.mktemp("patch") / "star.png")
    cv2.imwrite(path, rgba)
    return scene, path


def test_hand_counted_recall_and_disappearing_objects(scene_and_patch):
    scene, path = scene_and_patch
    rgb, alpha = elephant.load_patch(path)
    assert alpha is not None and tuple(rgb[20, 20]) == ORANGE  # RGB order, alpha kept
    frames = elephant.make_frames(scene, rgb, alpha, sizes=[0.25], grid=4)
    assert [tuple(p) for p in frames["positions"]] == [(x, y) for y in (0, 32, 64, 96) for x in (0, 32, 64, 96)]
    dets = detect_images(StubDetector(), [scene] + frames["images"], data_shape=128, batch_size=5)
    assert sorted(dets[0][0].tolist()) == [0, 1, 2]  # the clean scene: no orange pixel, 3 objects
    stats = elephant.elephant_stats(dets[0], dets[1:], frames["boxes"], patch_class=3, thresh=0.5, iou=0.5,
                                    max_cover=0.25, sizes=frames["sizes"])
    assert stats["found"] == [True, True, False, False] * 2 + [False, True, False, False] + [True, False] + [False] * 2
    assert stats["recall"] == pytest.approx(6 / 16)
    assert (stats["pairs"], stats["disappeared"]) == (45, 6)
    assert stats["disappear_share"] == pytest.approx(6 / 45)
    assert [(o["cls"], o["counted"], o["lost"]) for o in stats["clean_objects"]] == [(0, 15, 1), (1, 15, 0), (2, 15, 5)]
    assert stats["per_size"][0.25]["recall"] == pytest.approx(6 / 16)
    both = elephant.merge_stats([stats, stats])  # two scenes: counts add up
    assert (both["frames"], both["hits"], both["pairs"], both["disappeared"]) == (32, 12, 90, 12)
    assert both["recall"] == pytest.approx(6 / 16) and both["per_size"][0.25]["pairs"] == 90
    assert [o["scene"] for o in both["clean_objects"]] == [0, 0, 0, 1, 1, 1]


def test_cover_rule_and_no_clean_objects():
    empty = (np.zeros(0, np.int64), np.zeros(0, np.float32), np.zeros((0, 4), np.float32))
    clean = (np.array([0]), np.array([0.8], np.float32), np.array([[0, 0, 10, 10]], np.float32))
    pasted = np.array([[0, 0, 10, 2], [0, 0, 10, 3]], np.float32)  # covers 20 %, then 30 % of the object
    stats = elephant.elephant_stats(clean, [empty, empty], pasted, patch_class=1, max_cover=0.25)
    assert stats["counted"] == [[True], [False]] and (stats["pairs"], stats["disappeared"]) == (1, 1)
    assert stats["recall"] == 0.0
    stats = elephant.elephant_stats(empty, [empty], pasted[:1], patch_class=1)
    assert stats["clean_objects"] == [] and stats["disappear_share"] is None


def test_positions_paste_and_opaque_patch(tmp_path):
    assert elephant.patch_positions((100, 50), (30, 20), stride=35) == [(0, 0), (35, 0), (70, 0)]
    assert elephant.patch_positions((100, 50), (30, 20), grid=3) == [(x, y) for y in (0, 15, 30) for x in (0, 35, 70)]
    with pytest.raises(ValueError, match="does not fit"):
        elephant.patch_positions((20, 20), (30, 10))
    scene = np.zeros((20, 30, 3), np.uint8)
    alpha = np.zeros((6, 8), np.float32)
    alpha[2:5, 1:4] = 1.0
    frame, box = elephant.paste(scene, np.full((6, 8, 3), 200, np.uint8), alpha, 10, 5)
    assert box.tolist() == [11, 7, 14, 10] and frame[7, 11, 0] == 200 and frame[5, 10, 0] == 0
    frame, box = elephant.paste(scene, np.full((6, 8, 3), 200, np.uint8), None, 10, 5)
    assert box.tolist() == [10, 5, 18, 11] and (frame[5:11, 10:18] == 200).all()
    cv2.imwrite(str(tmp_path / "opaque.png"), np.full((4, 4, 4), 255, np.uint8))
    assert elephant.load_patch(str(tmp_path / "opaque.png"))[1] is None


def test_zero_area_detections_are_no_clean_objects_and_match_nothing():
    """An under-trained model's zero-width boxes (many identical copies) are not clean objects: the
    one real object is the only one counted, and a zero-width detection cannot 'find' it."""
    junk = np.array([[230.0, 0, 230, 365]] * 5)
    clean = (np.array([1] * 5 + [2]), np.array([0.99] * 5 + [0.8]), np.vstack([junk, [[10, 10, 50, 50]]]))
    frame_lost = (np.array([2]), np.array([0.9]), np.array([[30.0, 30, 30, 30]]))  # degenerate: no match
    frame_kept = (np.array([2]), np.array([0.9]), np.array([[11.0, 11, 50, 50]]))
    with np.errstate(all="raise"):  # no 'invalid value encountered in divide'
        stats = elephant.elephant_stats(clean, [frame_lost, frame_kept], np.array([[300.0, 300, 310, 310]] * 2),
                                        patch_class=0)
    assert [o["cls"] for o in stats["clean_objects"]] == [2]
    assert (stats["pairs"], stats["disappeared"]) == (2, 1)
