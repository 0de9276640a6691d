"""Overfit a small YOLOv3 on a few generated images: the loss falls and the VOC07 mAP on those
same images approaches 1 (the whole train path, targets, loss, decoding, NMS and metric agree)."""
import torch

from gluon_bof.data import VOCDetection
from gluon_bof.data.loader import detection_collate
from gluon_bof.data.synthetic import generate
from gluon_bof.data.transforms.presets.yolo import YOLO3DefaultValTransform
from gluon_bof.model_zoo import get_model
from gluon_bof.utils.lr_scheduler import LRScheduler
from gluon_bof.utils.metrics import VOC07MApMetric


def test_yolo3_overfits_four_images(tmp_path):
    torch.manual_seed(0)
    root = generate(str(tmp_path), num_trainval=4, num_test=1, seed=3)
    ds = VOCDetection(root, splits=((2007, "trainval"),))
    transform = YOLO3DefaultValTransform(128, 128)
    images, labels, _ = detection_collate([transform(*ds[i]) for i in range(len(ds))])
    train_labels = labels.clone()
    train_labels[..., 5] = torch.where(labels[..., 4] >= 0, 1.0, -1.0)  # column 6: mix weight 1
    net = get_model("yolo3_mobilenet0.25_custom", classes=ds.classes, channels=[32, 16, 16])
    optimizer = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
    iters = 300
    schedule = LRScheduler(optimizer, mode="cosine", base_lr=0.01, total_iters=iters, warmup_iters=20)
    net.train()
    first = None
    for _ in range(iters):
        schedule.step()
        loss = sum(net(images, train_labels).values())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        first = loss.item() if first is None else first
    assert loss.item() < first / 20
    net.eval()
    with torch.no_grad():
        ids, scores, bboxes = net(images)
    metric = VOC07MApMetric(class_names=ds.classes)
    metric.update(bboxes, ids, scores, labels[..., :4], labels[..., 4:5], labels[..., 5:6])
    assert metric.get()[1][-1] > 0.85
