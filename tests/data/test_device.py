"""Tests for gluon_bof/data/transforms/device.py (the device pipeline, ``--gpu-augment``) and the
encoded reads it rests on (gluon_bof/data/base.py): against the CPU pipeline, on the CPU here and
on CUDA where there is one."""
import io

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from gluon_bof.data.base import EncodedImage, decode_image, read_encoded, read_image
from gluon_bof.data.loader import TrainBatch, detection_collate
from gluon_bof.data.mixup import MixupDetection
from gluon_bof.data.synthetic import generate
from gluon_bof.data.transforms.device import (DeviceAugmentLoader, EncodedDataset, YOLO3DeviceTrainTransform,
                                              device_collate, render_batch)
from gluon_bof.data.transforms.presets.yolo import YOLO3DefaultTrainTransform
from gluon_bof.data.voc import VOCDetection

CUDA = torch.cuda.is_available()
# CPU pipeline vs device pipeline on the same decoded pixels, in normalised units: float32 rounding
# of sums taken in another order, and OpenCV's IPP bilinear/bicubic coefficients (~4e-5 of the range)
SAME_PIXELS = 3e-4


@pytest.fixture(scope="module")
def voc(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("voc"))
    generate(root, num_trainval=12, num_test=1)
    return VOCDetection(root, splits=((2007, "trainval"),))


def _batches(dataset, device_dataset, seeds, size=(160, 128), mixup=True):
    cpu_t = YOLO3DefaultTrainTransform(96, 96, mixup=mixup)
    dev_t = YOLO3DeviceTrainTransform(cpu_t)
    wrap = (lambda d: MixupDetection.beta(d)) if mixup else (lambda d: d)
    cpu_items, dev_items = wrap(dataset), wrap(device_dataset)
    cpu, dev = [], []
    for seed in seeds:
        np.random.seed(seed)
        cpu.append(cpu_t(*cpu_items[seed % len(cpu_items)], size=size))
        np.random.seed(seed)
        dev.append(dev_t(*dev_items[seed % len(dev_items)], size=size))
    return detection_collate(cpu), device_collate(dev)


@pytest.mark.parametrize("mixup", [True, False])
@pytest.mark.parametrize("encoded", [True, False], ids=["jpeg", "decoded"])
def test_cpu_device_equals_cpu_pipeline(voc, mixup, encoded):
    """Same labels exactly; pixels to float32 rounding (torchvision's CPU JPEG decoder is the
    libjpeg-turbo OpenCV uses: the same pixels)."""
    want, packed = _batches(voc, EncodedDataset(voc) if encoded else voc, range(16), mixup=mixup)
    got = render_batch(packed, "cpu")
    assert isinstance(got, TrainBatch) and got.images.shape == want.images.shape == (16, 3, 128, 160)
    torch.testing.assert_close(got.labels, want.labels, rtol=0, atol=0)
    assert (got.images - want.images).abs().max() < SAME_PIXELS


@pytest.mark.cuda
@pytest.mark.skipif(not CUDA, reason="needs CUDA")
def test_cuda_device_equals_cpu_pipeline(voc):
    """On CUDA: the same decoded pixels give the CPU pipeline's batch to float32 rounding; nvjpeg's
    decoding (IDCT, chroma upsampling) differs from libjpeg-turbo by a few levels on some pixels."""
    want, packed = _batches(voc, voc, range(16))
    got = render_batch(packed, "cuda")
    assert got.images.is_cuda and got.labels.is_cuda
    torch.testing.assert_close(got.labels.cpu(), want.labels, rtol=0, atol=0)
    assert (got.images.cpu() - want.images).abs().max() < SAME_PIXELS
    want, packed = _batches(voc, EncodedDataset(voc), range(16))
    diff = (render_batch(packed, "cuda").images.cpu() - want.images).abs()
    # 1 level is 1 / 255 / std ~ 0.017 here; nvjpeg is off by a few levels at edges at most
    assert diff.mean() < 0.01 and diff.max() < 0.3, (diff.mean().item(), diff.max().item())


def test_read_encoded_keeps_jpegs_and_decodes_the_rest(voc, tmp_path):
    path = voc.image_path(0)
    enc = read_encoded(path)
    assert isinstance(enc, EncodedImage) and enc.shape == read_image(path).shape
    np.testing.assert_array_equal(enc.decode(), read_image(path))
    img = read_image(path)
    cv2.imwrite(str(tmp_path / "a.png"), img[..., ::-1])
    png = read_encoded(str(tmp_path / "a.png"))
    assert isinstance(png, np.ndarray)
    np.testing.assert_array_equal(png, img)
    # an EXIF-rotated photo: decoded here, rotated as OpenCV does (torchvision would not rotate it)
    pil = Image.fromarray(img)
    exif = pil.getexif()
    exif[0x0112] = 6
    buf = io.BytesIO()
    pil.save(buf, "JPEG", exif=exif.tobytes())
    (tmp_path / "r.jpg").write_bytes(buf.getvalue())
    rotated = read_encoded(str(tmp_path / "r.jpg"))
    assert isinstance(rotated, np.ndarray) and rotated.shape == (img.shape[1], img.shape[0], 3)
    buf = io.BytesIO()
    pil.convert("CMYK").save(buf, "JPEG")
    (tmp_path / "c.jpg").write_bytes(buf.getvalue())
    assert isinstance(read_encoded(str(tmp_path / "c.jpg")), np.ndarray)


def test_decode_image_is_opencv_bgr_then_rgb(voc):
    data = np.fromfile(voc.image_path(1), np.uint8)
    np.testing.assert_array_equal(decode_image(data), cv2.cvtColor(cv2.imdecode(data, cv2.IMREAD_COLOR),
                                                                   cv2.COLOR_BGR2RGB))


def test_encoded_dataset_through_subset_and_refusals(voc):
    sub = torch.utils.data.Subset(voc, [3, 5])
    enc = EncodedDataset(sub)
    img, label = enc[1]
    assert img.path == voc.image_path(5)
    np.testing.assert_array_equal(label, voc.label(5))
    with pytest.raises(TypeError, match="image_path"):
        EncodedDataset([(np.zeros((2, 2, 3), np.uint8), np.zeros((0, 6)))])
    with pytest.raises(ValueError, match="data augmentation"):
        YOLO3DeviceTrainTransform(YOLO3DefaultTrainTransform(32, 32, data_aug=False))
    t = YOLO3DeviceTrainTransform(YOLO3DefaultTrainTransform(32, 32))
    items = [t(*EncodedDataset(voc)[i], size=s) for i, s in ((0, 32), (1, 64))]
    with pytest.raises(ValueError, match="one output size"):
        device_collate(items)


def test_loader_wrapper_and_pinned_batches(voc):
    _, packed = _batches(voc, EncodedDataset(voc), range(4))
    if CUDA:
        pinned = packed.pin_memory()
        assert pinned.color.is_pinned() and pinned.sources[0][0].is_pinned()
    loader = DeviceAugmentLoader([packed, packed], "cpu")
    assert len(loader) == 2
    batches = list(loader)
    assert all(isinstance(b, TrainBatch) for b in batches)
    torch.testing.assert_close(batches[0].images, batches[1].images)
