"""gluon_bof/nn/smoothing.py: the label-smoothing target values, by hand."""
import pytest

from gluon_bof.nn.smoothing import smoothing_values


def test_the_three_rules_by_hand():
    assert smoothing_values(5, 0.1, "paper") == pytest.approx((0.9, 0.025))  # eps / (K - 1)
    assert smoothing_values(5, 0.1, "uniform") == pytest.approx((0.92, 0.02))  # eps / K everywhere
    assert smoothing_values(20, 0.3, "gluoncv_yolo") == pytest.approx((0.975, 0.025))  # min(1/20, 1/40)
    assert smoothing_values(4, 0.3, "gluoncv_yolo") == pytest.approx((0.975, 0.025))  # 1/40 < 1/4
    assert smoothing_values(1, 0.1, "paper") == (0.9, 0.0)


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="rule must be one of"):
        smoothing_values(3, 0.1, "gluon")
    with pytest.raises(ValueError, match=r"eps must be in \[0, 1\)"):
        smoothing_values(3, 1.0)
