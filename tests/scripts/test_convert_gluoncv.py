"""scripts/convert_gluoncv.py and loading its safetensors by ``get_model(name, pretrained=path)``
(gluon_bof/model_zoo/model_store.py ``load_safetensors``): random weights exported in GluonCV's
format, converted, loaded back equal; damaged files and wrong digests refused by name."""
import hashlib
import json

import pytest
import torch

from gluon_bof.errors import CheckpointError
from gluon_bof.model_zoo import export_gluoncv_params, get_model, model_store

NAME = "mobilenet0.25"


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """(GluonCV .params of a random NAME with non-trivial BN statistics, the network)."""
    torch.manual_seed(0)
    net = get_model(NAME)
    with torch.no_grad():
        for key, t in net.state_dict().items():
            if t.is_floating_point():
                t.copy_(torch.rand_like(t) + 0.5 if key.endswith("running_var") else torch.randn_like(t))
    path = tmp_path_factory.mktemp("gluoncv") / f"{NAME}.params"
    export_gluoncv_params(net, path)
    return path, net


def _convert(*argv):
    import convert_gluoncv

    return convert_gluoncv.main(list(argv))


def test_convert_and_load_equal_tensors(exported, tmp_path):
    params, net = exported
    out = tmp_path / "out"
    card = _convert(NAME, "--params", str(params), "--out", str(out))
    weights = out / "model.safetensors"
    sha256 = hashlib.sha256(weights.read_bytes()).hexdigest()
    assert (out / "model.safetensors.sha256").read_text() == f"{sha256}  model.safetensors\n"
    on_disk = json.loads((out / "model.json").read_text())
    assert on_disk == card
    assert (card["name"], card["sha256"], card["gluoncv_sha1"]) == (
        NAME, sha256, hashlib.sha1(params.read_bytes()).hexdigest())
    assert card["gluoncv_published_sha1"] == model_store.MODEL_SHA1[NAME] != card["gluoncv_sha1"]
    assert card["date"] and card["gluon_bof_version"] and card["tensors"] == len(net.state_dict())
    loaded = get_model(NAME, pretrained=str(weights))
    for (key, want), got in zip(net.state_dict().items(), loaded.state_dict().values()):
        assert torch.equal(want, got), key


def test_wrong_digest_damaged_file_and_other_model_are_refused(exported, tmp_path):
    params, _ = exported
    out = tmp_path / "out"
    _convert(NAME, "--params", str(params), "--out", str(out))
    weights = out / "model.safetensors"
    digest = out / "model.safetensors.sha256"
    good = digest.read_text()
    digest.write_text("0" * 64 + "  model.safetensors\n")
    with pytest.raises(CheckpointError, match=rf"{weights}: sha256 is {good.split()[0]}, but .*says 0{{64}}"):
        get_model(NAME, pretrained=str(weights))
    digest.unlink()
    # a damaged copy with its digest: refused before reading; without a digest: unreadable
    data = weights.read_bytes()
    damaged = tmp_path / "damaged.safetensors"
    damaged.write_bytes(data[:100] + bytes([data[100] ^ 0xFF]) + data[101:])
    (tmp_path / "damaged.safetensors.sha256").write_text(good)
    with pytest.raises(CheckpointError, match=f"{damaged}: sha256 is"):
        get_model(NAME, pretrained=str(damaged))
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=f"{truncated}: not a readable safetensors file"):
        get_model(NAME, pretrained=str(truncated))
    # another model: nothing loaded, every differing tensor named
    other = get_model("mobilenet0.5")
    before = {k: v.clone() for k, v in other.state_dict().items()}
    with pytest.raises(CheckpointError) as e:
        model_store.load_weights_file(other, str(weights))
    msg = str(e.value)
    assert f"it records model '{NAME}'" in msg and "nothing was loaded" in msg
    assert "mis-shaped" in msg and "features.0.weight (file (8, 3, 3, 3), model (16, 3, 3, 3))" in msg
    assert all(torch.equal(before[k], v) for k, v in other.state_dict().items())


def test_wrong_params_and_the_store_path(exported, tmp_path, monkeypatch):
    params, _ = exported
    with pytest.raises(SystemExit, match=rf"(?s)^mobilenet0.5: {params}: cannot load .*mis-shaped"):
        _convert("mobilenet0.5", "--params", str(params), "--out", str(tmp_path / "x"))
    # no --params: the file comes through the weights store (a local mirror here)
    sha1 = hashlib.sha1(params.read_bytes()).hexdigest()
    previous = model_store.register_model_sha1(NAME, sha1)
    try:
        mirror = tmp_path / "mirror"
        mirror.mkdir()
        (mirror / f"{NAME}-{sha1[:8]}.params").write_bytes(params.read_bytes())
        monkeypatch.setenv("GLUON_BOF_HOME", str(tmp_path / "home"))
        monkeypatch.setenv("GLUON_BOF_MIRROR", str(mirror))
        monkeypatch.setenv("MXNET_GLUON_REPO", f"file://{tmp_path}/no-repo/")
        card = _convert(NAME, "--out", str(tmp_path / "store"))
    finally:
        model_store.register_model_sha1(NAME, previous)
    assert card["gluoncv_sha1"] == card["gluoncv_published_sha1"] == sha1
