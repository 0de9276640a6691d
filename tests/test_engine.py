"""engine.evaluate: what it hands the metric (clipped boxes, labels split into gt columns)."""
import numpy as np
import torch

from gluon_bof.engine import evaluate


class _OutsideBox(torch.nn.Module):
    """Predicts one box reaching past every border of any image."""

    def forward(self, x, image_sizes=None):
        b = x.shape[0]
        return torch.zeros(b, 1, 1), torch.ones(b, 1, 1), torch.tensor([[-5.0, -7.0, 500.0, 600.0]]).repeat(b, 1, 1)


class _Recorder:
    def reset(self):
        self.calls = []

    def update(self, *args):
        self.calls.append(args)

    def get(self):
        return ["mAP"], [0.0]


def _labels(b):
    lab = np.full((b, 1, 6), -1, np.float32)
    lab[:, 0] = [1, 2, 3, 4, 0, 1]
    return torch.from_numpy(lab)


def test_boxes_are_clipped_to_the_input_size():
    metric = _Recorder()
    evaluate(_OutsideBox(), [(torch.zeros(2, 3, 32, 48), _labels(2))], metric, device=torch.device("cpu"))
    boxes, ids, scores, gt_boxes, gt_ids, difficult = metric.calls[0]
    np.testing.assert_array_equal(boxes[:, 0], [[0, 0, 48, 32]] * 2)
    np.testing.assert_array_equal(gt_boxes[:, 0], [[1, 2, 3, 4]] * 2)
    assert gt_ids[0, 0, 0] == 0 and difficult[0, 0, 0] == 1


def test_padded_batches_clip_each_image_to_its_own_size():
    metric = _Recorder()
    sizes = torch.tensor([[20, 30], [32, 48]])  # (h, w) of each real image inside the padded batch
    evaluate(_OutsideBox(), [(torch.zeros(2, 3, 32, 48), _labels(2), sizes)], metric, device=torch.device("cpu"))
    np.testing.assert_array_equal(metric.calls[0][0][:, 0], [[0, 0, 30, 20], [0, 0, 48, 32]])
