"""gluon_bof.utils.speed: the host-sync counter, the timer, the matmul peak and the FLOP count."""
import inspect

import torch

from gluon_bof.ops.nms import box_nms
from gluon_bof.utils.speed import SyncCounter, count_flops, matmul_peak, timed


def _line() -> int:
    return inspect.currentframe().f_back.f_lineno


def test_sync_counter_counts_each_kind_at_its_line():
    x = torch.arange(6.0)
    mask = x > 2
    with SyncCounter() as c:
        x.sum().item(); item_line = _line()  # noqa: E702
        bool(x.max() > 3); bool_line = _line()  # noqa: E702
        x[mask]; index_line = _line()  # noqa: E702,B018
        x[mask] = 0.0; put_line = _line()  # noqa: E702
        mask.nonzero(); nonzero_line = _line()  # noqa: E702
        torch.unique(x); unique_line = _line()  # noqa: E702
        x.tolist(); tolist_line = _line()  # noqa: E702
        y = x * 2 + 1  # no sync: elementwise work stays on the device
        torch.where(mask, x, y)  # the three-argument where: no sync
    found = {(site.rsplit(":", 1)[1], kind): n for (site, kind), n in c.sites.items()}
    assert all(site.rsplit(":", 1)[0].endswith("test_speed.py") for site, _ in c.sites)
    assert found == {(str(item_line), "item"): 1, (str(bool_line), "item"): 1, (str(index_line), "bool-index"): 1,
                     (str(put_line), "bool-index"): 1, (str(nonzero_line), "nonzero"): 1,
                     (str(unique_line), "unique"): 1, (str(tolist_line), "tolist"): 1}
    assert c.total == 7 and c.by_kind == {"item": 2, "bool-index": 2, "nonzero": 1, "unique": 1, "tolist": 1}
    assert torch.Tensor.tolist(torch.ones(1)) == [1.0]  # restored on exit
    assert c.table()[0]["count"] == 1


def test_sync_counter_names_the_gluon_bof_line_and_sees_nms():
    boxes = [torch.tensor([[[0.0, 0.0, 10.0, 10.0], [1.0, 1.0, 10.0, 10.0], [20.0, 20.0, 30.0, 30.0]]])]
    scores = [torch.tensor([[[0.9], [0.8], [0.7]]])]
    with SyncCounter() as c:
        ids, s, _ = box_nms(boxes, scores, 0.45, 0.01, 400, 10)
    assert s[0, :2, 0].tolist() == [0.8999999761581421, 0.699999988079071]  # the overlapping 0.8 went
    kinds = {kind for (site, kind) in c.sites if site.startswith("gluon_bof/ops/nms.py:")}
    assert {"nonzero", "nms"} <= kinds  # one image: one candidate selection, one NMS


def test_timed_counts_warmup_apart():
    calls = []
    t = timed(lambda: calls.append(1), torch.device("cpu"), iters=3, warmup=2)
    assert len(calls) == 5 and t["seconds"] >= 0 and t["first_s"] is not None
    assert abs(t["per_iter_s"] - t["seconds"] / 3) < 1e-12


def test_matmul_peak_and_flops():
    assert matmul_peak(torch.device("cpu"), torch.float32, n=128, repeats=2) > 1e6
    a, b = torch.randn(8, 16), torch.randn(16, 4)
    assert count_flops(lambda: a @ b) == 2 * 8 * 16 * 4  # 2 per multiply-add
    conv = torch.nn.Conv2d(3, 5, 3, bias=False)
    # forward: 2 * (out 5 x 6 x 6) * (3 x 3 x 3) multiply-adds; backward: twice that (input and weight grads)
    x = torch.randn(1, 3, 8, 8, requires_grad=True)
    assert count_flops(lambda: conv(x).sum().backward()) == 3 * 2 * 5 * 6 * 6 * 27
