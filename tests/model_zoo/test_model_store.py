"""gluon_bof/model_zoo/model_store.py against a local HTTP server (no other network).

The served file is a real ``mobilenet0.25`` classifier written with our ``save_params``; its
sha1 (computed here with hashlib) replaces the table entry through ``register_model_sha1``.
"""
import hashlib
import http.server
import io
import multiprocessing
import os
import socket
import threading
import zipfile

import pytest
import torch

from gluon_bof.model_zoo import get_model, model_store
from gluon_bof.model_zoo.gluoncv import export_gluoncv_params

NAME = "mobilenet0.25"
MAX_REQUESTS = 50


class _Server:
    """Serves ``routes[path]``: a list of bodies, one per request (the last one repeats)."""

    def __init__(self):
        self.routes, self.log, self.delay = {}, [], 0.0
        store = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802
                store.log.append(self.path)
                bodies = store.routes.get(self.path)
                if bodies is None or len(store.log) > MAX_REQUESTS:
                    self.send_error(404)
                    return
                body = bodies.pop(0) if len(bodies) > 1 else bodies[0]
                if store.delay:
                    threading.Event().wait(store.delay)
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                       daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def _zip(file_name: str, data: bytes) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr(file_name + ".params", data)
    return buf.getvalue()


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    """(source net, .params bytes, sha1) of a mobilenet0.25 with non-default weights."""
    torch.manual_seed(0)
    net = get_model(NAME)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-1, 1)
                m.running_var.uniform_(0.5, 2)
    path = tmp_path_factory.mktemp("src") / "w.params"
    export_gluoncv_params(net, path)
    data = path.read_bytes()
    return net, data, hashlib.sha1(data).hexdigest()


@pytest.fixture
def store(weights, tmp_path, monkeypatch):
    """A served mobilenet0.25 zip at GluonCV's URL layout, an empty cache, the sha1 registered."""
    _, data, sha1 = weights
    previous = model_store.register_model_sha1(NAME, sha1)
    server = _Server()
    file_name = f"{NAME}-{sha1[:8]}"
    route = f"/gluon/models/{file_name}.zip"
    server.routes[route] = [_zip(file_name, data)]
    monkeypatch.setenv("GLUON_BOF_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("MXNET_GLUON_REPO", server.url)
    monkeypatch.delenv("GLUON_BOF_MIRROR", raising=False)
    monkeypatch.setattr(model_store, "BACKOFF_S", 0.0)
    yield server, route, file_name, sha1, data
    server.close()
    model_store.MODEL_SHA1[NAME] = previous


def test_table_holds_gluoncv_names():
    # GluonCV 0.10.5 model_store.py, _model_sha1
    assert model_store.MODEL_SHA1["yolo3_darknet53_voc"] == "f5ece5ce1422eeca3ce2908004e469ffdf91fd41"
    assert model_store.short_hash("darknet53") == "2189ea49"
    assert model_store.short_hash("Faster_RCNN_ResNet50_v1b_VOC") == "447328d8"
    with pytest.raises(model_store.ModelStoreError, match="yolo3_mobilenet0.25_voc"):
        model_store.short_hash("yolo3_mobilenet0.25_voc")


def test_download_verify_and_reuse(store, tmp_path):
    server, route, file_name, sha1, data = store
    path = model_store.get_model_file(NAME)
    assert path == str(tmp_path / "home" / "models" / f"{file_name}.params")
    assert open(path, "rb").read() == data
    assert server.log == [route]
    assert not os.path.exists(path[:-len(".params")] + ".zip")  # the zip is removed
    assert model_store.get_model_file(NAME) == path
    assert server.log == [route]  # second call: no request


def test_repo_without_trailing_slash_and_explicit_root(store, tmp_path, monkeypatch):
    server, route, file_name, _, _ = store
    monkeypatch.setenv("MXNET_GLUON_REPO", server.url.rstrip("/"))
    path = model_store.get_model_file(NAME, root=str(tmp_path / "elsewhere"))
    assert path == str(tmp_path / "elsewhere" / f"{file_name}.params")
    assert server.log == [route]


@pytest.mark.parametrize("how", ["mirror_zip", "mirror_params", "file_repo", "path_repo"])
def test_local_mirror(store, tmp_path, monkeypatch, how):
    server, _, file_name, _, data = store
    mirror = tmp_path / "mirror"
    if how == "mirror_params":
        mirror.mkdir()
        (mirror / f"{file_name}.params").write_bytes(data)
        monkeypatch.setenv("GLUON_BOF_MIRROR", str(mirror))
    else:
        (mirror / "gluon" / "models").mkdir(parents=True)
        (mirror / "gluon" / "models" / f"{file_name}.zip").write_bytes(_zip(file_name, data))
        if how == "mirror_zip":
            monkeypatch.setenv("GLUON_BOF_MIRROR", str(mirror))
        else:
            monkeypatch.setenv("MXNET_GLUON_REPO", ("file://" if how == "file_repo" else "") + str(mirror))
    path = model_store.get_model_file(NAME)
    assert open(path, "rb").read() == data
    assert server.log == []


def test_local_repo_without_the_file_names_both_places(store, tmp_path, monkeypatch):
    _, _, file_name, sha1, _ = store
    monkeypatch.setenv("MXNET_GLUON_REPO", f"file://{tmp_path}/empty/")
    with pytest.raises(model_store.ModelStoreError) as e:
        model_store.get_model_file(NAME)
    msg = str(e.value)
    assert str(tmp_path / "home" / "models" / f"{file_name}.params") in msg
    assert "GLUON_BOF_MIRROR" in msg and sha1 in msg


def test_corrupted_download_is_retried(store):
    server, route, file_name, sha1, data = store
    bad = bytearray(data)
    bad[-1] ^= 0xFF
    server.routes[route] = [_zip(file_name, bytes(bad)), b"not a zip", _zip(file_name, data)]
    path = model_store.get_model_file(NAME)
    assert hashlib.sha1(open(path, "rb").read()).hexdigest() == sha1
    assert server.log == [route] * 3
    left = [f for f in os.listdir(os.path.dirname(path)) if not f.endswith(".lock")]
    assert left == [f"{file_name}.params"]  # no zip, partial or temporary file


def test_always_corrupted_names_file_url_and_sha1s(store):
    server, route, file_name, sha1, data = store
    bad = data[:-4] + b"\0\0\0\0"
    server.routes[route] = [_zip(file_name, bad)]
    with pytest.raises(model_store.ModelStoreError) as e:
        model_store.get_model_file(NAME)
    msg = str(e.value)
    assert f"{file_name}.params" in msg and server.url + route[1:] in msg
    assert sha1 in msg and hashlib.sha1(bad).hexdigest() in msg
    assert len(server.log) == model_store.RETRIES
    assert not any(f.endswith((".params", ".zip", ".part")) for f in os.listdir(model_store.model_root()))


def test_server_down_says_where_to_put_the_file(store, tmp_path, monkeypatch):
    _, _, file_name, sha1, _ = store
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("MXNET_GLUON_REPO", f"http://127.0.0.1:{port}/")
    with pytest.raises(model_store.ModelStoreError) as e:
        model_store.get_model_file(NAME)
    msg = str(e.value)
    assert str(tmp_path / "home" / "models" / f"{file_name}.params") in msg
    assert f"{file_name}.zip" in msg and "GLUON_BOF_MIRROR" in msg and sha1 in msg


def _fetch_in_child(queue):
    queue.put(model_store.get_model_file(NAME))


def test_two_processes_download_once(store):
    server, route, _, _, data = store
    server.delay = 0.5  # both processes start while the first download is running
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_fetch_in_child, args=(queue,)) for _ in range(2)]
    for p in procs:
        p.start()
    paths = [queue.get(timeout=30) for _ in procs]
    for p in procs:
        p.join(timeout=30)
        assert p.exitcode == 0
    assert paths[0] == paths[1] and open(paths[0], "rb").read() == data
    assert server.log == [route]


def test_get_model_pretrained_true_end_to_end(store, weights, monkeypatch):
    src = weights[0]
    server, route, file_name, _, _ = store
    net = get_model(NAME, pretrained=True)
    for key, value in src.state_dict().items():
        assert torch.equal(net.state_dict()[key], value), key
    cache = os.path.join(model_store.model_root(), f"{file_name}.pth")
    assert os.path.isfile(cache)

    def no_conversion(*args, **kwargs):
        raise AssertionError("the converted cache should be used")

    monkeypatch.setattr("gluon_bof.model_zoo.gluoncv.load_gluoncv_params", no_conversion)
    again = get_model(NAME, pretrained=True)
    for key, value in src.state_dict().items():
        assert torch.equal(again.state_dict()[key], value), key
    assert server.log == [route]


def test_pretrained_base_true_loads_the_backbone(store, weights):
    src = weights[0]
    net = get_model("yolo3_mobilenet0.25_voc", pretrained_base=True)
    assert torch.equal(net.stages[0][0].weight, src.features[0].weight)
    assert torch.equal(net.stages[2][10].running_var, src.features[79].running_var)


def test_pretrained_local_files(weights, tmp_path):
    from gluon_bof.training import save_model_checkpoint

    src, data, _ = weights
    (tmp_path / "w.params").write_bytes(data)
    save_model_checkpoint(str(tmp_path / "ckpt.pth"), model=src, model_name=NAME)
    torch.save(src.state_dict(), tmp_path / "plain.pth")
    torch.save({"module." + k: v for k, v in src.state_dict().items()}, tmp_path / "ddp.pth")
    for f in ("w.params", "ckpt.pth", "plain.pth", "ddp.pth"):
        net = get_model(NAME, pretrained=str(tmp_path / f))
        assert torch.equal(net.output.weight, src.output.weight), f
        assert torch.equal(net.features[4].running_mean, src.features[4].running_mean), f
    torch.save({"epoch": 3}, tmp_path / "junk.pth")
    with pytest.raises(ValueError, match="junk.pth"):
        get_model(NAME, pretrained=str(tmp_path / "junk.pth"))
    with pytest.raises(FileNotFoundError, match="missing.pth"):
        get_model(NAME, pretrained=str(tmp_path / "missing.pth"))


def test_custom_detector_has_no_gluoncv_weights():
    with pytest.raises(model_store.ModelStoreError, match="yolo3_mobilenet0.25_custom"):
        get_model("yolo3_mobilenet0.25_custom", classes=["a"], pretrained=True)


def test_a_pth_that_does_not_fit_loads_nothing_and_other_anchors_are_refused(tmp_path):
    """torch's load_state_dict copies every fitting tensor before it reports the rest; ours checks
    first: a checkpoint with one mis-shaped tensor changes nothing. A YOLOv3 checkpoint built with
    other anchors does not silently replace the model's, and int32 'weights' are refused."""
    import numpy as np
    import torch

    from gluon_bof.errors import CheckpointError
    from gluon_bof.model_zoo import get_model, load_weights_file
    from gluon_bof.model_zoo.yolo3 import scaled_anchors

    torch.manual_seed(0)
    src = get_model("yolo3_mobilenet0.25_custom", classes=["a", "b"], channels=[16, 8, 8])
    state = {k: v.clone() for k, v in src.state_dict().items()}
    first = next(k for k in state if k.endswith("weight"))
    state["yolo_outputs.0.prediction.weight"] = torch.zeros(3, 3, 1, 1)
    torch.save(state, tmp_path / "bad.pth")
    net = get_model("yolo3_mobilenet0.25_custom", classes=["a", "b"], channels=[16, 8, 8])
    before = net.state_dict()[first].clone()
    with pytest.raises(CheckpointError, match=r"bad\.pth: does not fit YOLOV3; nothing was loaded\n  mis-shaped"):
        load_weights_file(net, str(tmp_path / "bad.pth"))
    assert torch.equal(net.state_dict()[first], before)  # nothing copied
    other = get_model("yolo3_mobilenet0.25_custom", classes=["a", "b"], channels=[16, 8, 8],
                      anchors=scaled_anchors(0.5))
    torch.save(other.state_dict(), tmp_path / "anchors.pth")
    with pytest.raises(CheckpointError, match="differing constants.*anchors"):
        load_weights_file(net, str(tmp_path / "anchors.pth"))
    ints = {k: (v * 1e9).to(torch.int32) if k == first else v for k, v in src.state_dict().items()}
    torch.save(ints, tmp_path / "ints.pth")
    with pytest.raises(CheckpointError, match=r"incompatible dtypes \(1\).*int32"):
        load_weights_file(net, str(tmp_path / "ints.pth"))
    assert np.isfinite(net.state_dict()[first].numpy()).all()


def test_params_storing_floats_as_int32_are_refused(tmp_path):
    """MXNet's load_parameters refuses a dtype mismatch ('dtype incompatible'); a float may only
    widen (float16 weights into a float32 model)."""
    import numpy as np

    from gluon_bof.model_zoo import get_model, load_gluoncv_params
    from gluon_bof.model_zoo.gluoncv import gluoncv_state
    from gluon_bof.model_zoo.mxnet_params import save_params

    net = get_model("mobilenet0.25", classes=3)
    params = gluoncv_state(net)
    name = next(k for k in params if k.endswith("weight"))
    save_params(tmp_path / "ints.params", {**params, name: (params[name] * 1e9).astype(np.int32)})
    with pytest.raises(ValueError, match=r"(?s)ints\.params: cannot load.*nothing was loaded.*incompatible dtypes.*int32"):
        load_gluoncv_params(net, str(tmp_path / "ints.params"))
    save_params(tmp_path / "half.params", {k: v.astype(np.float16) for k, v in params.items()})
    load_gluoncv_params(net, str(tmp_path / "half.params"))  # widening: fine
    with pytest.raises(ValueError, match="incompatible dtypes"):  # float32 into a float16 model narrows
        load_gluoncv_params(get_model("mobilenet0.25", classes=3).half(), params)
