"""Tests for scripts/datasets/{pascal_voc,mscoco}.py and gluon_bof/data/prepare.py.

Small archives in the official layouts are built from the generated dataset and served on
127.0.0.1; ``--mirror`` points the scripts at the server and ``--checksums`` gives their sha1s.
"""
import hashlib
import http.server
import importlib.util
import io
import json
import os
import tarfile
import threading
import xml.etree.ElementTree as ET
import zipfile

import pytest

from gluon_bof.data import COCODetection, VOCDetection
from gluon_bof.data.prepare import PrepareError, safe_extract
from gluon_bof.data.synthetic import CLASSES, generate

SCRIPTS = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                       "scripts", "datasets")
VOC07, VOC07_TEST, VOC12 = ("VOCtrainval_06-Nov-2007.tar", "VOCtest_06-Nov-2007.tar",
                            "VOCtrainval_11-May-2012.tar")


def load_script(name):
    spec = importlib.util.spec_from_file_location(f"datasets_{name}", os.path.join(SCRIPTS, name + ".py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


pascal_voc, mscoco = load_script("pascal_voc"), load_script("mscoco")


# ------------------------------------------------------------------------------ test archives
def _objects(xml_path):
    """(xmin, ymin, xmax, ymax) 0-based, class name of each object, read independently."""
    root = ET.parse(xml_path).getroot()
    return [([float(o.find("bndbox").find(t).text) - 1 for t in ("xmin", "ymin", "xmax", "ymax")],
             o.find("name").text) for o in root.iter("object")]


def _tar(members, dirs=()):
    """A plain tar (bytes) from ``{name: bytes}`` with the folder entries ``dirs`` first."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for d in dirs:
            info = tarfile.TarInfo(d)
            info.type, info.mode = tarfile.DIRTYPE, 0o755
            tar.addfile(info)
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _zip(members):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


def _read(path):
    with open(path, "rb") as f:
        return f.read()


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """Generated data -> the official archive layouts; returns ``(archives {file: bytes}, info)``."""
    gen = generate(str(tmp_path_factory.mktemp("gen")), num_trainval=6, num_test=3, seed=3)
    voc = os.path.join(gen, "VOC2007")
    ids = {s: _read(os.path.join(voc, "ImageSets", "Main", s + ".txt")).decode().split()
           for s in ("trainval", "test")}
    boxes = {i: _objects(os.path.join(voc, "Annotations", i + ".xml")) for s in ids for i in ids[s]}

    def voc_tar(year, split):
        m = {f"VOCdevkit/VOC{year}/ImageSets/Main/{split}.txt": _read(
            os.path.join(voc, "ImageSets", "Main", split + ".txt"))}
        for i in ids[split]:
            m[f"VOCdevkit/VOC{year}/Annotations/{i}.xml"] = _read(os.path.join(voc, "Annotations", i + ".xml"))
            m[f"VOCdevkit/VOC{year}/JPEGImages/{i}.jpg"] = _read(os.path.join(voc, "JPEGImages", i + ".jpg"))
        return _tar(m, dirs=("VOCdevkit", f"VOCdevkit/VOC{year}"))

    def instances(split):
        images, anns = [], []
        for k, i in enumerate(ids[split]):
            w, h = (int(ET.parse(os.path.join(voc, "Annotations", i + ".xml")).find("size").find(t).text)
                    for t in ("width", "height"))
            images.append({"id": k + 1, "file_name": i + ".jpg", "width": w, "height": h})
            for (x0, y0, x1, y1), name in boxes[i]:
                anns.append({"id": len(anns) + 1, "image_id": k + 1, "category_id": CLASSES.index(name) + 1,
                             "bbox": [x0, y0, x1 - x0, y1 - y0], "area": (x1 - x0) * (y1 - y0), "iscrowd": 0})
        cats = [{"id": c + 1, "name": n} for c, n in enumerate(CLASSES)]
        return json.dumps({"images": images, "annotations": anns, "categories": cats}).encode()

    jpgs = {s: {i: _read(os.path.join(voc, "JPEGImages", i + ".jpg")) for i in ids[s]} for s in ids}
    archives = {
        VOC07: voc_tar(2007, "trainval"), VOC07_TEST: voc_tar(2007, "test"), VOC12: voc_tar(2012, "trainval"),
        "train2017.zip": _zip({f"train2017/{i}.jpg": d for i, d in jpgs["trainval"].items()}),
        "val2017.zip": _zip({f"val2017/{i}.jpg": d for i, d in jpgs["test"].items()}),
        "annotations_trainval2017.zip": _zip({"annotations/instances_train2017.json": instances("trainval"),
                                              "annotations/instances_val2017.json": instances("test")}),
    }
    nbox = {s: sum(len(boxes[i]) for i in ids[s]) for s in ids}
    return archives, dict(ids=ids, nbox=nbox, jpgs=jpgs)


class Server:
    """Serves ``files`` ({file name: bytes}) at ``/mirror/<name>`` with Range support; ``log``
    holds ``(name, Range header, bytes sent)`` of every request (at most 30 are answered)."""

    def __init__(self, files):
        self.files, self.log = dict(files), []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                name, rng = self.path.rsplit("/", 1)[-1], self.headers.get("Range")
                data = server.files.get(name)
                if data is None or len(server.log) >= 30:
                    server.log.append((name, rng, 0))
                    self.send_error(404)
                    return
                start = int(rng.split("=")[1].split("-")[0]) if rng else 0
                self.send_response(206 if rng else 200)
                self.send_header("Content-Length", str(len(data) - start))
                if rng:
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                self.end_headers()
                server.log.append((name, rng, len(data) - start))
                self.wfile.write(data[start:])

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/mirror"
        threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True).start()


@pytest.fixture
def serve(source, tmp_path):
    """``serve(files=None, sha1s=None)`` -> (server, common argv); defaults: the good archives."""
    servers = []

    def start(files=None, sha1s=None):
        files = dict(source[0], **(files or {}))
        table = {n: hashlib.sha1(d).hexdigest() for n, d in source[0].items()}
        table.update(sha1s or {})
        ck = tmp_path / f"checksums{len(servers)}.json"
        ck.write_text(json.dumps(table))
        servers.append(Server(files))
        return servers[-1], ["--mirror", servers[-1].url, "--checksums", str(ck), "--quiet",
                             "--retries", "1"]

    yield start
    for s in servers:
        s.httpd.shutdown()
        s.httpd.server_close()


def voc_counts(root):
    ds = VOCDetection(root, splits=((2007, "trainval"), (2007, "test"), (2012, "trainval")), classes=CLASSES)
    return len(ds), sum(ds.label(i).shape[0] for i in range(len(ds)))


# ----------------------------------------------------------------------------------------- VOC
def test_voc_prepare_then_skip(source, serve, tmp_path):
    _, info = source
    server, argv = serve()
    root = str(tmp_path / "voc")
    assert pascal_voc.main(["--root", root] + argv) == root
    assert sorted(n for n, _, _ in server.log) == sorted([VOC07, VOC07_TEST, VOC12])
    assert sorted(os.listdir(root)) == [".prepared", "VOC2007", "VOC2012", "downloads"]  # no VOCdevkit
    n_tv, n_te = len(info["ids"]["trainval"]), len(info["ids"]["test"])
    assert voc_counts(root) == (2 * n_tv + n_te, 2 * info["nbox"]["trainval"] + info["nbox"]["test"])
    i = info["ids"]["test"][0]
    assert _read(os.path.join(root, "VOC2007", "JPEGImages", i + ".jpg")) == info["jpgs"]["test"][i]
    server.log.clear()
    pascal_voc.main(["--root", root] + argv)
    assert server.log == []  # everything marked as prepared


def test_voc_download_dir_reuse_makes_no_request(source, serve, tmp_path):
    dl = tmp_path / "fetched_elsewhere"
    dl.mkdir()
    for name in (VOC07, VOC07_TEST, VOC12):
        (dl / name).write_bytes(source[0][name])
    server, argv = serve()
    root = str(tmp_path / "voc")
    pascal_voc.main(["--root", root, "--download-dir", str(dl)] + argv)
    assert server.log == []
    assert voc_counts(root)[0] == 2 * 6 + 3
    root2 = str(tmp_path / "voc2")
    pascal_voc.main(["--root", root2, "--download-dir", str(dl), "--no-download", "--only",
                     "VOC2007-test"] + argv)
    assert server.log == [] and os.path.isfile(os.path.join(root2, "VOC2007/ImageSets/Main/test.txt"))
    with pytest.raises(PrepareError, match="VOCtrainval_06-Nov-2007.tar.*--no-download"):
        pascal_voc.main(["--root", str(tmp_path / "voc3"), "--no-download"] + argv)


def test_truncated_archive_is_named_and_nothing_extracted(source, serve, tmp_path):
    cut = source[0][VOC07][:len(source[0][VOC07]) // 2]
    # the served file is cut short but its sha1 is the listed one: extraction must notice
    server, argv = serve({VOC07: cut}, {VOC07: hashlib.sha1(cut).hexdigest()})
    root = tmp_path / "voc"
    with pytest.raises(PrepareError, match=r"VOCtrainval_06-Nov-2007\.tar.*truncated"):
        pascal_voc.main(["--root", str(root), "--only", "VOC2007-trainval"] + argv)
    assert sorted(os.listdir(root)) == [".prepared", "downloads"]
    assert not [f for f in os.listdir(root / ".prepared") if f.endswith(".json")]
    # cut exactly at a member boundary: tarfile alone would stop silently
    header_end = source[0][VOC07].index(b"ImageSets/Main/trainval.txt") // 512 * 512 + 1024
    assert safe_extract_raises(tmp_path, source[0][VOC07][:header_end])


def safe_extract_raises(tmp_path, data):
    path = tmp_path / "cut.tar"
    path.write_bytes(data)
    with pytest.raises(PrepareError, match="cut.tar.*truncated"):
        safe_extract(str(path), str(tmp_path / "out"))
    return True


def test_corrupted_archive_fails_then_bad_copy_is_redownloaded(source, serve, tmp_path):
    good = source[0][VOC07]
    bad = good[:5000] + bytes([good[5000] ^ 0xFF]) + good[5001:]
    server, argv = serve({VOC07: bad})
    root = tmp_path / "voc"
    with pytest.raises(PrepareError) as e:
        pascal_voc.main(["--root", str(root), "--only", "VOC2007-trainval"] + argv)
    for s in (VOC07, hashlib.sha1(good).hexdigest(), hashlib.sha1(bad).hexdigest()):
        assert s in str(e.value)
    assert len(server.log) == 2  # one retry
    assert not (root / "VOC2007").exists() and not (root / "downloads" / VOC07).exists()
    # a bad copy left in the download folder is detected by its sha1 and fetched again
    (root / "downloads" / VOC07).write_bytes(bad)
    server, argv = serve()
    pascal_voc.main(["--root", str(root), "--only", "VOC2007-trainval"] + argv)
    assert [n for n, _, _ in server.log] == [VOC07]
    assert _read(root / "downloads" / VOC07) == good and (root / "VOC2007" / "JPEGImages").is_dir()


def test_overwrite_fetches_and_extracts_again(source, serve, tmp_path):
    server, argv = serve()
    root = tmp_path / "voc"
    pascal_voc.main(["--root", str(root), "--only", "VOC2007-test"] + argv)
    test_txt = root / "VOC2007" / "ImageSets" / "Main" / "test.txt"
    test_txt.write_text("edited\n")
    pascal_voc.main(["--root", str(root), "--only", "VOC2007-test", "--overwrite"] + argv)
    assert [n for n, _, _ in server.log] == [VOC07_TEST, VOC07_TEST]
    assert test_txt.read_text().split() == source[1]["ids"]["test"]


def test_partial_download_resumes(source, serve, tmp_path):
    data = source[0][VOC07_TEST]
    dl = tmp_path / "voc" / "downloads"
    dl.mkdir(parents=True)
    (dl / (VOC07_TEST + ".part")).write_bytes(data[:20000])
    server, argv = serve()
    pascal_voc.main(["--root", str(tmp_path / "voc"), "--only", "VOC2007-test"] + argv)
    assert server.log == [(VOC07_TEST, "bytes=20000-", len(data) - 20000)]
    assert _read(dl / VOC07_TEST) == data


@pytest.mark.parametrize("member", ["../evil.txt", "/tmp/evil.txt", "VOCdevkit/../../evil.txt"])
def test_path_traversal_member_rejected(serve, tmp_path, member):
    evil = _tar({"VOCdevkit/VOC2007/ImageSets/Main/test.txt": b"1\n", member: b"x"})
    server, argv = serve({VOC07_TEST: evil}, {VOC07_TEST: None})
    root = tmp_path / "a" / "voc"
    with pytest.raises(PrepareError, match=r"VOCtest_06-Nov-2007\.tar.*unsafe member"):
        pascal_voc.main(["--root", str(root), "--only", "VOC2007-test"] + argv)
    assert not (tmp_path / "a" / "evil.txt").exists() and not (root / "VOC2007").exists()


def test_links_and_zip_traversal_rejected(tmp_path):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo("VOC2007/link")
        info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tar.addfile(info)
    (tmp_path / "l.tar").write_bytes(buf.getvalue())
    with pytest.raises(PrepareError, match="l.tar.*link"):
        safe_extract(str(tmp_path / "l.tar"), str(tmp_path / "out"))
    link = zipfile.ZipInfo("val2017/link")
    link.external_attr = (0o120777) << 16  # a symlink, as zip -y stores it
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr(link, "/etc/passwd")
    (tmp_path / "s.zip").write_bytes(buf.getvalue())
    with pytest.raises(PrepareError, match="s.zip.*link"):
        safe_extract(str(tmp_path / "s.zip"), str(tmp_path / "out"))
    (tmp_path / "z.zip").write_bytes(_zip({"annotations/../../evil.json": b"{}"}))
    with pytest.raises(PrepareError, match="z.zip.*unsafe member"):
        safe_extract(str(tmp_path / "z.zip"), str(tmp_path / "out"))
    assert not (tmp_path / "evil.json").exists()


# ---------------------------------------------------------------------------------------- COCO
def test_coco_prepare_then_skip(source, serve, tmp_path):
    _, info = source
    server, argv = serve()
    root = str(tmp_path / "coco")
    mscoco.main(["--root", root] + argv)
    assert len(server.log) == 3
    train = COCODetection(root, splits="instances_train2017")
    val = COCODetection(root, splits="instances_val2017", skip_empty=False)
    assert len(train) == len(info["ids"]["trainval"]) and len(val) == len(info["ids"]["test"])
    assert sum(train.label(i).shape[0] for i in range(len(train))) == info["nbox"]["trainval"]
    assert sum(val.label(i).shape[0] for i in range(len(val))) == info["nbox"]["test"]
    server.log.clear()
    mscoco.main(["--root", root] + argv)
    assert server.log == []


def test_coco_truncated_zip_named(source, serve, tmp_path):
    cut = source[0]["val2017.zip"][:-100]
    server, argv = serve({"val2017.zip": cut}, {"val2017.zip": hashlib.sha1(cut).hexdigest()})
    with pytest.raises(PrepareError, match=r"val2017\.zip.*truncated"):
        mscoco.main(["--root", str(tmp_path / "coco"), "--only", "val2017"] + argv)
    assert not (tmp_path / "coco" / "val2017").exists()
