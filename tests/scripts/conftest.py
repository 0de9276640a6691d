import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "scripts"))


@pytest.fixture(scope="session")
def synthetic_root(tmp_path_factory):
    """A small built-in dataset (VOC layout) shared by the script tests."""
    from gluon_bof.data.synthetic import generate

    return generate(str(tmp_path_factory.mktemp("synthetic")), num_trainval=24, num_test=8, seed=1)


@pytest.fixture
def stop_resume_and_compare(monkeypatch):
    """``check(run, part_prefix, checkpoint_name, full)``: runs ``run(part_prefix)`` with a stop
    requested after 3 training steps (as a SIGTERM would), checks the checkpoint it leaves is at
    epoch 0, batch 3, resumes with ``run(part_prefix, '--resume', ckpt)`` and asserts the final
    state (weights, schedule, momentum) and history (every epoch's mean losses; images/s over the
    whole epoch, never 0) equal the uninterrupted run's checkpoint ``full``."""
    import torch

    from gluon_bof import fit as fit_module
    from gluon_bof.engine import StopRequest
    from gluon_bof.utils.checkpoint import load_checkpoint

    class StopAfter(StopRequest):
        limit, steps = 3, 0

        @property
        def requested(self):
            StopAfter.steps += 1
            return StopAfter.steps >= StopAfter.limit

        @requested.setter
        def requested(self, value):
            pass

    def check(run, part, name, full):
        ckpt = part + name
        monkeypatch.setattr(fit_module, "StopRequest", StopAfter)
        run(part)
        stopped = load_checkpoint(ckpt)
        assert (stopped["epoch"], stopped["epoch_iter"]) == (0, 3)
        monkeypatch.setattr(fit_module, "StopRequest", StopRequest)
        run(part, "--resume", ckpt)
        resumed = load_checkpoint(ckpt)
        assert resumed["epoch"] == full["epoch"]
        for k, v in full["model"].items():
            assert torch.equal(v, resumed["model"][k]), k
        assert resumed["lr_scheduler"] == full["lr_scheduler"]
        m_full, m_res = full["optimizer"]["state"], resumed["optimizer"]["state"]
        assert m_full and all(torch.equal(m_full[i]["momentum_buffer"], m_res[i]["momentum_buffer"])
                              for i in m_full)
        assert len(resumed["history"]) == len(full["history"])
        for a, b in zip(full["history"], resumed["history"]):
            losses = sorted(k for k in a if k.endswith("loss"))
            assert losses and losses == sorted(k for k in b if k.endswith("loss"))
            assert [a[k] for k in losses] == pytest.approx([b[k] for k in losses], rel=1e-9), a["epoch"]
            assert b["images_per_sec"] > 0
        return resumed

    return check
