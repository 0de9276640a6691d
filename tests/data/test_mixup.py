"""Tests for gluon_bof/data/mixup.py: by hand and against GluonCV's MixupDetection."""
import os
import pickle

import numpy as np
import pytest
import torch

from gluon_bof.data.mixup import FixedRatio, MixupDetection, PendingMix, blend

FIX = np.load(os.path.join(os.path.dirname(__file__), "..", "fixtures", "transforms.npz"))


def _const(h, w, v):
    return np.full((h, w, 3), v, np.uint8)


LAB1 = np.array([[0, 0, 5, 3, 1, 0], [1, 1, 2, 2, 0, 1]], np.float32)
LAB2 = np.array([[0, 1, 2, 5, 2, 0]], np.float32)
ITEMS = [(_const(4, 6, 101), LAB1), (_const(6, 3, 201), LAB2)]


def test_pixels_canvas_and_weights_by_hand():
    img, label = MixupDetection.fixed(ITEMS, 0.3)[0]
    assert img.shape == (6, 6, 3) and img.dtype == np.uint8
    # float32 blend truncated to uint8: 101*.3 = 30.3 -> 30, 201*.7 = 140.7 -> 140 (not 141)
    np.testing.assert_array_equal(img[:4, :3], int(np.float32(101) * np.float32(0.3)
                                                    + np.float32(201) * np.float32(0.7)))
    np.testing.assert_array_equal(img[:4, 3:], 30)   # first image only
    np.testing.assert_array_equal(img[4:, :3], 140)  # second image only
    np.testing.assert_array_equal(img[4:, 3:], 0)    # neither
    assert label.shape == (3, 7) and label.dtype == np.float32
    np.testing.assert_array_equal(label[:, :6], np.concatenate([LAB1, LAB2]))  # geometry kept
    np.testing.assert_allclose(label[:, 6], [0.3, 0.3, 0.7], rtol=1e-6)


@pytest.mark.parametrize("i", range(3))
def test_matches_gluoncv(i):
    items = [(FIX["mix_img1"], FIX["mix_lab1"]), (FIX["mix_img2"], FIX["mix_lab2"])]
    img, label = MixupDetection.fixed(items, FIX["mix_ratios"][i])[0]
    np.testing.assert_array_equal(img, FIX[f"mix{i}_img"])
    np.testing.assert_allclose(label, FIX[f"mix{i}_label"], rtol=1e-6)


def test_disabled_returns_first_item_with_weight_one():
    items = [(FIX["mix_img1"], FIX["mix_lab1"]), (FIX["mix_img2"], FIX["mix_lab2"])]
    ds = MixupDetection(items, None)
    np.random.seed(0)
    state = np.random.get_state()[1].copy()
    img, label = ds[1]
    np.testing.assert_array_equal(img, FIX["mix_off_img"])
    np.testing.assert_array_equal(label, FIX["mix_off_label"])
    np.testing.assert_array_equal(np.random.get_state()[1], state)  # no partner drawn
    ds = MixupDetection.beta(ITEMS)
    ds.set_mixup(None)
    img, label = ds[0]
    assert img is ITEMS[0][0]
    np.testing.assert_array_equal(label[:, 6], 1)


def test_ratio_is_clipped():
    img, label = MixupDetection.fixed(ITEMS, 1.7)[0]
    assert img is ITEMS[0][0] and label.shape == (2, 7) and (label[:, 6] == 1).all()
    img, label = MixupDetection.fixed(ITEMS, -0.5)[0]
    assert img.shape == (6, 6, 3)
    np.testing.assert_array_equal(img[:, :3], 201)
    np.testing.assert_array_equal(img[:, 3:], 0)
    np.testing.assert_array_equal(label[:, 6], [0, 0, 1])


def test_partner_draw_matches_gluoncv():
    ds = MixupDetection.fixed([(None, None)] * 7, 0.5)
    for seed, idx, partner in FIX["mix_partners"]:
        np.random.seed(seed)
        assert ds._partner(int(idx)) == partner


def test_partner_is_uniform_over_the_others():
    ds = MixupDetection.fixed([(None, None)] * 4, 0.5)
    np.random.seed(0)
    counts = np.bincount([ds._partner(2) for _ in range(4000)], minlength=4)
    assert counts[2] == 0 and (np.abs(counts[[0, 1, 3]] / 4000 - 1 / 3) < 0.03).all()
    ds = MixupDetection.fixed([(None, None)] * 4, 0.5, preserve_shuffle=False)
    assert 2 in {ds._partner(2) for _ in range(200)}


def test_beta_and_gluoncv_positional_forms_draw_from_global_numpy():
    items = [(_const(2, 2, 0), LAB1), (_const(2, 2, 255), LAB2)]
    np.random.seed(5)
    want = np.float32(np.random.beta(1.5, 1.5))
    for ds in (MixupDetection.beta(items, alpha=1.5, beta=1.5),
               MixupDetection(items, np.random.beta, 1.5, 1.5),
               pickle.loads(pickle.dumps(MixupDetection(items, np.random.beta, 1.5, 1.5)))):
        np.random.seed(5)
        _, label = ds[0]
        assert label[0, 6] == want  # the worker's own (re-seeded) global RNG is used
    ds = MixupDetection(items)
    ds.set_mixup(np.random.uniform, 0.2, 0.2)
    assert ds[0][1][0, 6] == np.float32(0.2)


def test_empty_labels_and_columns():
    empty = np.zeros((0, 6), np.float32)
    items = [(_const(3, 3, 10), empty), (_const(2, 4, 20), LAB2)]
    img, label = MixupDetection.fixed(items, 0.5)[0]
    assert img.shape == (3, 4, 3) and label.shape == (1, 7) and label[0, 6] == 0.5
    img, label = MixupDetection.fixed(items[:1] * 2, 0.5)[0]
    assert label.shape == (0, 7)
    five = [(_const(3, 3, 10), LAB1[:, :5]), (_const(2, 4, 20), LAB2[:, :5])]
    assert MixupDetection.fixed(five, 0.5)[1][1].shape == (3, 6)
    with pytest.raises(ValueError, match="mixup.py"):
        MixupDetection.fixed([(_const(3, 3, 1), LAB1), (_const(3, 3, 1), LAB2[:, :5])], 0.5)[0]


def test_length_one_dataset_and_passthrough():
    class One:
        classes = ("a",)

        def __len__(self):
            return 1

        def __getitem__(self, i):
            return _const(2, 2, 100), LAB2

    ds = MixupDetection.fixed(One(), 0.5)
    img, label = ds[0]
    np.testing.assert_array_equal(img, 100)  # mixed with itself
    assert len(ds) == 1 and ds.classes == ("a",) and label.shape == (2, 7)


def _float_canvas(img1, img2, lam):
    """GluonCV's order: a float32 zero canvas, img1 * lam, += img2 * (1 - lam), truncated."""
    h1, w1 = img1.shape[:2]
    h2, w2 = img2.shape[:2]
    mix = np.zeros((max(h1, h2), max(w1, w2), 3), np.float32)
    mix[:h1, :w1] = img1.astype(np.float32) * np.float32(lam)
    mix[:h2, :w2] += img2.astype(np.float32) * (np.float32(1) - np.float32(lam))
    return mix.astype(np.uint8)


def test_blend_is_the_float_canvas_bit_for_bit():
    rng = np.random.default_rng(0)
    for k in range(200):  # every arrangement: same size, one larger, taller vs wider
        h1, w1, h2, w2 = (int(v) for v in rng.integers(1, 12, 4))
        a = rng.integers(0, 256, (h1, w1, 3), dtype=np.uint8)
        b = rng.integers(0, 256, (h2, w2, 3), dtype=np.uint8)
        lam = np.float32([rng.random(), 0, 1, 0.5, 1e-7][k % 5])
        np.testing.assert_array_equal(blend(a, b, lam), _float_canvas(a, b, lam))
    a = np.repeat(np.arange(256, dtype=np.uint8), 256).reshape(256, 256, 1).repeat(3, 2)
    for lam in np.float32([0.3, 0.123456, 0.999]):  # every pair of pixel values
        np.testing.assert_array_equal(blend(a, a.transpose(1, 0, 2), lam),
                                      _float_canvas(a, a.transpose(1, 0, 2), lam))


def test_pending_mix_for_undecoded_images():
    class Encoded:  # anything with .shape that is not an array is blended later, on the device
        def __init__(self, img):
            self.shape, self.img = img.shape, img

        def decode(self):
            return self.img

    items = [(Encoded(_const(4, 6, 101)), LAB1), (Encoded(_const(6, 3, 201)), LAB2)]
    img, label = MixupDetection.fixed(items, 0.3)[0]
    assert isinstance(img, PendingMix) and img.shape == (6, 6, 3) and img.lam == np.float32(0.3)
    want, want_label = MixupDetection.fixed(ITEMS, 0.3)[0]
    np.testing.assert_array_equal(img.blend(), want)
    np.testing.assert_array_equal(label, want_label)


class _Flagged(torch.utils.data.Dataset):
    """Items report whether the mixup dataset mixed them (a partner was drawn)."""

    def __init__(self, mix):
        self.mix = mix

    def __len__(self):
        return 4

    def __getitem__(self, i):
        _, label = self.mix[i]
        return torch.tensor(len(label))


def test_switch_reaches_persistent_workers():
    """set_mixup(None) / set_mixup(...) between epochs takes effect in workers that live on."""
    mix = MixupDetection.fixed(ITEMS * 2, 0.5)
    loader = torch.utils.data.DataLoader(_Flagged(mix), batch_size=4, num_workers=1,
                                         persistent_workers=True)
    rows = []
    for enabled in (True, False, True):
        mix.set_mixup(FixedRatio(0.5) if enabled else None)
        rows.append(next(iter(loader)).tolist())
    single = [len(lab) for _, lab in ITEMS * 2]
    assert rows[1] == single  # off: no partner
    assert all(m > s for row in (rows[0], rows[2]) for m, s in zip(row, single))  # on: a partner's boxes