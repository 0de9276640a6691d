"""scripts/benchmark_zoo.py and gluon_bof/model_zoo/zoo_table.py (the zoo table)."""
import csv
import datetime
import shutil

import pytest

from gluon_bof.model_zoo import model_store, zoo_table

NAME = "yolo3_mobilenet0.25_custom"
KWARGS = {"channels": [32, 16, 16]}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """(data root, checkpoint of a small YOLOv3 for its classes, a zoo table with its row)."""
    import torch

    from gluon_bof.data.synthetic import CLASSES, generate
    from gluon_bof.model_zoo import get_model
    from gluon_bof.training import save_model_checkpoint

    base = tmp_path_factory.mktemp("bench")
    root = generate(str(base / "data"), num_trainval=8, num_test=4)
    torch.manual_seed(0)
    kwargs = dict(KWARGS, classes=list(CLASSES))
    net = get_model(NAME, **kwargs)
    ckpt = str(base / "ckpt.pth")
    save_model_checkpoint(ckpt, model=net, model_name=NAME, model_kwargs=kwargs)
    rows = zoo_table.read_table()[:3]
    rows.append({c: "" for c in zoo_table.COLUMNS})
    rows[-1].update(name=NAME, dataset="shapes", gluoncv_metric="VOC07 mAP@0.5 @128",
                    gluoncv_published="12.5")
    table = str(base / "zoo.csv")
    zoo_table.write_table(rows, table)
    return root, ckpt, table


def _run(args):
    import benchmark_zoo

    return benchmark_zoo.main(args)


def test_table_round_trips_and_agrees_with_the_store(tmp_path):
    copy = tmp_path / "zoo.csv"
    shutil.copy(zoo_table.DEFAULT_TABLE, copy)
    rows = zoo_table.read_table(str(copy))
    zoo_table.write_table(rows, str(copy))
    assert copy.read_bytes() == open(zoo_table.DEFAULT_TABLE, "rb").read()
    assert zoo_table.read_table(str(copy)) == rows
    for row in rows:
        assert row["gluoncv_sha1"] == model_store.MODEL_SHA1.get(row["name"], ""), row["name"]
        assert not row["measured"] or row["measured_note"], f"{row['name']}: measured without a note"
    # GluonCV docs/model_zoo/csv_tables: Pascal_YOLO-v3.csv (416) and MSCOCO_YOLO-v3.csv (608)
    assert zoo_table.find_row(rows, "yolo3_darknet53_voc", "VOC07 mAP@0.5 @416")["gluoncv_published"] == "81.5"
    assert zoo_table.find_row(rows, "yolo3_darknet53_coco", "COCO AP@[.5:.95] @608")["gluoncv_published"] == "37.0"


def test_table_rejects_duplicates_and_missing_columns(tmp_path):
    bad = tmp_path / "dup.csv"
    rows = [{c: "" for c in zoo_table.COLUMNS} for _ in range(2)]
    for r in rows:
        r.update(name="m", gluoncv_metric="x")
    zoo_table.write_table(rows, str(bad))
    with pytest.raises(ValueError, match="dup.csv:3"):
        zoo_table.read_table(str(bad))
    (tmp_path / "cols.csv").write_text("name,dataset\nm,voc\n")
    with pytest.raises(ValueError, match="gluoncv_metric"):
        zoo_table.read_table(str(tmp_path / "cols.csv"))


def test_markdown():
    rows = [{c: "" for c in zoo_table.COLUMNS}]
    rows[0].update(name="a|b", gluoncv_published="81.5")
    md = zoo_table.to_markdown(rows, columns=("name", "gluoncv_published", "measured"))
    assert md == "| name | gluoncv_published | measured |\n|---|---|---|\n| a\\|b | 81.5 | - |\n"


def test_benchmark_prints_both_columns_and_writes_only_when_asked(tiny, tmp_path, capsys):
    import eval_yolo3

    root, ckpt, table = tiny
    before = open(table, "rb").read()
    args = ["--models", NAME, "--weights", ckpt, "--data-root", root, "--data-shape", "128",
            "-j", "0", "--batch-size", "2", "--table", table]
    results = _run(args)
    out = capsys.readouterr().out
    assert "GluonCV published" in out and "measured here" in out
    (name, metric, measured, source, _), = results
    assert (name, metric, source) == (NAME, "VOC07 mAP@0.5 @128", ckpt)
    line = next(ln for ln in out.splitlines() if ln.startswith(NAME))
    assert "12.5" in line and f"{measured:.2f}" in line
    assert open(table, "rb").read() == before  # measured stays empty unless --write

    # the same number as the evaluation script gives for the same checkpoint (a fraction there)
    ref = eval_yolo3.main(["--checkpoint", ckpt, "--data-root", root, "--data-shape", "128",
                           "-j", "0", "--batch-size", "2"])
    assert measured == pytest.approx(100 * ref[128]["mAP"], abs=0.005)

    _run(args + ["--write", "--markdown"])
    out = capsys.readouterr().out
    rows = zoo_table.read_table(table)
    assert [r["measured"] for r in rows] == ["", "", "", f"{measured:.2f}"]
    note = rows[-1]["measured_note"]
    assert datetime.date.today().isoformat() in note and root in note and "--data-shape 128" in note
    assert f"| {NAME} | shapes | VOC07 mAP@0.5 @128 | 12.5 | - | {measured:.2f} |" in out
    with open(table, newline="") as f:
        assert next(csv.reader(f)) == list(zoo_table.COLUMNS)


def test_benchmark_needs_weights_and_matching_counts(tiny):
    root, ckpt, table = tiny
    with pytest.raises(SystemExit):
        _run(["--models", NAME, "--data-root", root, "--table", table])
    with pytest.raises(SystemExit):
        _run(["--models", NAME, "yolo3_darknet53_voc", "--weights", ckpt, "--table", table])


def test_markdown_only(capsys):
    _run(["--markdown"])
    out = capsys.readouterr().out
    assert out.splitlines()[0] == "| name | dataset | gluoncv_metric | gluoncv_published | paper | measured |"
    assert "| yolo3_darknet53_voc | VOC07+12 trainval / VOC07 test | VOC07 mAP@0.5 @416 | 81.5 | - | - |" in out


def test_benchmark_on_coco_data_scores_coco_ap(tiny, tmp_path):
    from gluon_bof.data.convert import voc_to_coco

    root, ckpt, table = tiny
    coco_root = voc_to_coco(root, str(tmp_path / "coco"))
    args = ["--models", NAME, "--weights", ckpt, "--dataset", "coco", "--data-root", coco_root,
            "--data-shape", "64", "--batch-size", "4", "-j", "0", "--table", table]
    (name, metric, exact, _, _), = _run(args)
    (_, _, legacy, _, _), = _run(args + ["--legacy-plus-one"])
    assert name == NAME and metric == "COCO AP@[.5:.95] @64"
    import eval_yolo3  # the eval script's COCO numbers, in percent, for both box conventions

    for flags, measured in (([], exact), (["--legacy-plus-one"], legacy)):
        res = eval_yolo3.main(["--checkpoint", ckpt, "--dataset", "coco", "--data-root", coco_root,
                               "--data-shape", "64", "--batch-size", "4", "-j", "0", *flags])
        assert measured == round(100 * res[64]["mAP"], 2)


def test_fpn_syncbn_evaluates_by_name_into_its_row(tmp_path):
    """MegDet's detector by GluonCV's name: a GluonCV-format file of it builds the named model,
    evaluated at the size its zoo row measures; GluonCV publishes no weights for it."""
    import torch

    import benchmark_zoo
    from eval_faster_rcnn import eval_sizes
    from gluon_bof.model_zoo import export_gluoncv_params, get_model

    name = "faster_rcnn_fpn_syncbn_resnet50_v1b_coco"
    row = zoo_table.find_row(zoo_table.read_table(), name, "COCO AP@[.5:.95] @800x1333")
    assert row is not None and row["gluoncv_sha1"] == "" and "--use-fpn --syncbn" in row["command"]
    torch.manual_seed(0)
    path = str(tmp_path / f"{name}.params")
    export_gluoncv_params(get_model(name), path)
    net, source, built = benchmark_zoo._build(name, path)
    assert (source, built, type(net).__name__) == (path, name, "FasterRCNNFPN")
    (s, m), = eval_sizes(None, None, net)
    assert zoo_table.metric_name("coco", f"{s}x{m}") == row["gluoncv_metric"]
    with pytest.raises(model_store.ModelStoreError, match="publishes no pretrained weights"):
        benchmark_zoo._build(name, None)
