"""Tests for gluon_bof/data/transforms/resample.py: OpenCV's resize as weight tables, checked
against cv2.resize itself on random cases (its generic code, with IPP off, to float32 rounding; with
IPP on, bilinear and bicubic within IPP's own difference)."""
import cv2
import numpy as np
import pytest

from gluon_bof.data.transforms.resample import resize_embedded, resize_tables


@pytest.fixture
def generic_opencv():
    """OpenCV without IPP: the code resample.py mirrors (IPP only takes bilinear and bicubic)."""
    use = cv2.ipp.useIPP()
    cv2.ipp.setUseIPP(False)
    yield
    cv2.ipp.setUseIPP(use)


def _case(rng, interp, in_size, out_size, part=None):
    ih, iw = in_size
    ph, pw = part or (int(rng.integers(1, ih + 1)), int(rng.integers(1, iw + 1)))
    y0, x0 = int(rng.integers(0, ih - ph + 1)), int(rng.integers(0, iw - pw + 1))
    img = (rng.random((ph, pw, 3)) * 255).astype(np.float32)
    canvas = np.zeros((ih, iw, 3), np.float32)
    canvas[y0:y0 + ph, x0:x0 + pw] = img
    want = cv2.resize(canvas, out_size[::-1], interpolation=interp).reshape(out_size + (3,))
    got = resize_embedded(img, (x0, y0), in_size, out_size, interp)
    return got, want


SIZES = [((300, 400), (416, 416)), ((970, 1300), (416, 416)), ((832, 832), (416, 416)),  # 2x: area
         ((1, 1), (5, 7)), ((7, 5), (1, 1)), ((50, 900), (320, 96)), ((416, 416), (416, 416)),
         ((123, 457), (288, 608)), ((2, 3), (416, 416))]


@pytest.mark.parametrize("interp", range(5))
@pytest.mark.parametrize("in_size,out_size", SIZES)
def test_matches_opencv_generic_code(generic_opencv, interp, in_size, out_size):
    rng = np.random.default_rng([interp, *in_size, *out_size])
    for _ in range(3):
        got, want = _case(rng, interp, in_size, out_size)
        np.testing.assert_allclose(got, want, rtol=0, atol=255 * 1e-6)


def test_random_cases_against_opencv_with_ipp():
    """OpenCV as it runs by default: nearest, area and Lanczos to float32 rounding; bilinear and
    bicubic within the difference between OpenCV's IPP and generic code (~4e-5 of the range)."""
    rng = np.random.default_rng(0)
    worst = np.zeros(5)
    for trial in range(150):
        interp = trial % 5
        in_size = tuple(int(v) for v in rng.integers(1, 700, 2))
        out_size = tuple(int(v) for v in rng.integers(1, 500, 2))
        got, want = _case(rng, interp, in_size, out_size)
        worst[interp] = max(worst[interp], np.abs(got - want).max() / 255)
    assert worst[[0, 3, 4]].max() <= 1e-6, worst
    assert worst[[1, 2]].max() <= 1e-4, worst


def test_flip_reverses_the_columns(generic_opencv):
    rng = np.random.default_rng(1)
    img = (rng.random((40, 60, 3)) * 255).astype(np.float32)
    for interp in range(5):
        plain = resize_embedded(img, (10, 5), (70, 90), (32, 48), interp)
        flipped = resize_embedded(img, (10, 5), (70, 90), (32, 48), interp, flip=True)
        np.testing.assert_allclose(flipped, plain[:, ::-1], atol=255 * 1e-6)


def _dense(taps, n_in):
    out = np.zeros((len(taps.index), n_in))
    np.add.at(out, (np.arange(len(taps.index))[:, None], taps.index), taps.weight)
    return out


def test_tables_by_hand():
    rows, cols = resize_tables((8, 6), (4, 3), 1)  # 2x bilinear shrink: OpenCV averages 2x2 cells
    np.testing.assert_allclose(_dense(rows, 8), np.kron(np.eye(4), [[0.5, 0.5]]))
    np.testing.assert_allclose(_dense(cols, 6), np.kron(np.eye(3), [[0.5, 0.5]]))
    rows, cols = resize_tables((5, 4), (5, 4), 4)  # same size: a copy
    np.testing.assert_array_equal(_dense(cols, 4), np.eye(4))
    rows, _ = resize_tables((4, 4), (8, 8), 0)  # nearest: floor(dx * in / out)
    np.testing.assert_array_equal(rows.index[:, 0], [0, 0, 1, 1, 2, 2, 3, 3])
    rows, _ = resize_tables((2, 2), (4, 4), 1)  # bilinear x2: centres at (d + .5) / 2 - .5, clamped
    np.testing.assert_allclose(_dense(rows, 2), [[1, 0], [.75, .25], [.25, .75], [0, 1]])
    rows, _ = resize_tables((3, 3), (2, 2), 3)  # area 1.5x: cells of 1.5 input pixels
    np.testing.assert_allclose(_dense(rows, 3), [[2 / 3, 1 / 3, 0], [0, 1 / 3, 2 / 3]], rtol=1e-6)


def test_edges_part_outside_reads_and_bad_arguments():
    out = resize_embedded(np.zeros((0, 4, 3), np.float32), (0, 0), (8, 8), (4, 4), 1)
    assert out.shape == (4, 4, 3) and not out.any()
    part = np.ones((2, 2, 3), np.float32)  # a part no nearest sample reads: all zero
    np.testing.assert_array_equal(resize_embedded(part, (1, 1), (100, 100), (4, 4), 0), 0)
    with pytest.raises(ValueError, match="resample.py"):
        resize_tables((0, 4), (4, 4), 1)
    with pytest.raises(ValueError, match="resample.py"):
        resize_tables((4, 4), (4, 4), 7)
    with pytest.raises(ValueError, match="resample.py"):
        resize_embedded(np.ones((2, 2), np.float32), (0, 0), (4, 4), (2, 2), 1)
