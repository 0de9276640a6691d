"""GluonCV's MixSoftmaxCrossEntropyLoss as it trains (gluon_bof/nn/segmentation.py), against
MXNet 1.9.1's gradients (tests/fixtures/fcn.npz, tests/fixtures/gen_fcn.py)."""
from pathlib import Path

import numpy as np
import pytest
import torch

from gluon_bof.nn.segmentation import gluoncv_reported_loss, mix_softmax_cross_entropy

FX = np.load(Path(__file__).resolve().parents[1] / "fixtures" / "fcn.npz")


def _inputs():
    p1 = torch.tensor(FX["loss/pred1"], dtype=torch.float64, requires_grad=True)
    p2 = torch.tensor(FX["loss/pred2"], dtype=torch.float64, requires_grad=True)
    return p1, p2, torch.tensor(FX["loss/label"]).long()


def test_gluoncv_normalization_gives_gluoncvs_update_with_aux_weight_one():
    """GluonCV's gradients (SoftmaxOutput normalisation 'valid', before Trainer.step(batch_size)
    divides by B) ignore the aux weight; ours with aux_weight=1, times B, are the same."""
    p1, p2, label = _inputs()
    losses = mix_softmax_cross_entropy([p1, p2], label, aux_weight=1.0, normalization="gluoncv")
    sum(losses.values()).backward()
    b = label.shape[0]
    np.testing.assert_allclose(p1.grad.numpy() * b, FX["loss/grad1"], rtol=1e-5, atol=1e-8)
    np.testing.assert_allclose(p2.grad.numpy() * b, FX["loss/grad2"], rtol=1e-5, atol=1e-8)


def test_aux_weight_scales_the_aux_gradient_and_mean_mode_drops_the_batch_division():
    p1, p2, label = _inputs()
    sum(mix_softmax_cross_entropy([p1, p2], label, aux_weight=0.5, normalization="mean").values()).backward()
    np.testing.assert_allclose(p1.grad.numpy(), FX["loss/grad1"], rtol=1e-5, atol=1e-8)
    np.testing.assert_allclose(p2.grad.numpy(), 0.5 * FX["loss/grad2"], rtol=1e-5, atol=1e-8)


def test_reported_values_are_gluoncvs():
    p1, p2, label = _inputs()
    value = gluoncv_reported_loss([p1, p2], label, aux_weight=float(FX["loss/aux_weight"]))
    np.testing.assert_allclose(value.numpy(), FX["loss/value"], rtol=1e-5)


def test_main_only_ignore_only_and_bad_mode():
    p1, _, label = _inputs()
    assert set(mix_softmax_cross_entropy([p1], label)) == {"loss"}
    empty = mix_softmax_cross_entropy([p1], torch.full_like(label, -1))
    assert empty["loss"].item() == 0.0
    with pytest.raises(ValueError, match="normalization"):
        mix_softmax_cross_entropy([p1], label, normalization="sum")
