"""Tests for gluon_bof/data/build.py's loaders: DataLoader options and the device pipeline."""
import numpy as np
import pytest
import torch

from gluon_bof.data import build
from gluon_bof.data.loader import TrainBatch
from gluon_bof.data.synthetic import generate
from gluon_bof.data.voc import VOCDetection
from gluon_bof.errors import ConfigError
from gluon_bof.utils.threads import worker_init


@pytest.fixture(scope="module")
def voc(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("voc"))
    generate(root, num_trainval=8, num_test=1)
    return VOCDetection(root, splits=((2007, "trainval"),))


def test_loader_options_defaults_and_refusals():
    o = build.loader_options(2)
    assert o == {"num_workers": 2, "worker_init_fn": worker_init, "pin_memory": torch.cuda.is_available(),
                 "persistent_workers": True}
    o = build.loader_options(0, pin_memory=True)
    assert o["persistent_workers"] is False and o["pin_memory"] is True and "prefetch_factor" not in o
    assert build.loader_options(3, prefetch_factor=4, persistent_workers=False)["prefetch_factor"] == 4
    for bad in (dict(num_workers=0, prefetch_factor=2), dict(num_workers=2, prefetch_factor=0),
                dict(num_workers=0, persistent_workers=True), dict(num_workers=-1)):
        with pytest.raises(ConfigError):
            build.loader_options(bad.pop("num_workers"), **bad)


def test_loaders_take_the_options(voc):
    loader, _, _ = build.yolo3_train_loader(voc, batch_size=2, sizes=64, num_workers=1, prefetch_factor=3,
                                            pin_memory=False)
    assert loader.persistent_workers and loader.prefetch_factor == 3 and not loader.pin_memory
    val = build.yolo3_val_loader(voc, batch_size=2, data_shape=64, num_workers=0)
    assert not val.persistent_workers and val.pin_memory == torch.cuda.is_available()
    loader, _, _ = build.faster_rcnn_train_loader(voc, batch_size=1, short=64, max_size=96, num_workers=2)
    assert loader.persistent_workers and loader.num_workers == 2
    val = build.faster_rcnn_val_loader(voc, short=64, max_size=96, num_workers=1, persistent_workers=False)
    assert not val.persistent_workers


def _epoch(loader, sampler, mixup_set, settings, epoch, enabled):
    sampler.set_epoch(epoch)
    build.set_mixup(mixup_set, settings, enabled)
    return list(loader)


@pytest.mark.parametrize("workers", [0, 1])
def test_device_augment_loader_gives_the_cpu_loaders_batches(voc, workers):
    """Same sampler, seeds and draws: the device loader's batches are the CPU loader's, epoch after
    epoch, mixup switched off for the last one (persistent workers see it)."""
    settings = build.MixupSettings()
    kw = dict(batch_size=2, sizes=[64, 96], num_workers=workers, seed=3, mixup=settings, pin_memory=False)
    cpu = build.yolo3_train_loader(voc, **kw)
    dev = build.yolo3_train_loader(voc, device_augment=True, device="cpu", **kw)
    for epoch, enabled in ((0, True), (1, False)):
        want = _epoch(*cpu, settings, epoch, enabled)
        got = _epoch(*dev, settings, epoch, enabled)
        assert len(got) == len(want) == len(dev[0]) == 4
        for g, w in zip(got, want):
            assert isinstance(g, TrainBatch)
            torch.testing.assert_close(g.labels, w.labels, rtol=0, atol=0)
            assert (g.images - w.images).abs().max() < 3e-4
        weights = torch.cat([b.labels[..., 5][b.labels[..., 4] >= 0] for b in got])
        assert bool((weights < 1).any()) == enabled  # mix weights only while mixup is on


def test_device_augment_refusals(voc):
    with pytest.raises(ConfigError, match="device"):
        build.yolo3_train_loader(voc, batch_size=2, sizes=64, num_workers=0, device_augment=True)
    with pytest.raises(ConfigError, match="no-data-aug"):
        build.yolo3_train_loader(voc, batch_size=2, sizes=64, num_workers=0, device_augment=True,
                                 device="cpu", data_aug=False)


def test_mixup_switch_without_workers_restarting(voc):
    """The switch lives in shared memory: a MixupDetection copied into a worker sees it."""
    _, _, mix = build.yolo3_train_loader(voc, batch_size=2, sizes=64, num_workers=0,
                                         mixup=build.MixupSettings(fixed=0.5))
    mix.set_mixup(None)
    assert mix._enabled.is_shared() and mix._enabled.item() == 0
    np.random.seed(0)
    assert (mix[0][1][:, -1] == 1).all()
