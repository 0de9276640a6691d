import json

import numpy as np
import pytest
import torch

from gluon_bof.utils.checkpoint import atomic_save, get_rng_state, load_checkpoint, save_checkpoint, set_rng_state


def test_atomic_save_keeps_old_file_when_writing_fails(tmp_path):
    path = tmp_path / "ck.pth"
    atomic_save({"model": {"a": 1}}, str(path))

    class Unpicklable:
        def __reduce__(self):
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        atomic_save({"model": Unpicklable()}, str(path))
    assert torch.load(path, weights_only=False) == {"model": {"a": 1}}
    assert [p.name for p in tmp_path.iterdir()] == ["ck.pth"]  # no temporary file left behind


def test_save_checkpoint_writes_the_state_and_its_settings_json(tmp_path):
    path = str(tmp_path / "run_last.pth")
    save_checkpoint(path, {"model": {"w": torch.ones(2)}, "epoch": 3}, {"lr": 0.1})
    state = load_checkpoint(path)
    assert state["epoch"] == 3 and torch.equal(state["model"]["w"], torch.ones(2))
    assert json.load(open(tmp_path / "run_last.json")) == {"lr": 0.1}


def test_load_checkpoint_errors_name_the_file(tmp_path):
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="bad.pth"):
        load_checkpoint(str(bad))
    with pytest.raises(FileNotFoundError, match="missing.pth"):
        load_checkpoint(str(tmp_path / "missing.pth"))


def test_rng_state_round_trip():
    state = get_rng_state()
    a = (np.random.rand(), torch.rand(1).item())
    set_rng_state(state)
    assert (np.random.rand(), torch.rand(1).item()) == a
