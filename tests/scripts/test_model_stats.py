"""scripts/model_stats.py: multiply-adds and parameters against Bag of Tricks Table 5 and by hand."""
import json

import pytest

import model_stats

# Bag of Tricks Table 5 at 224x224: "FLOPs" (multiply-adds) in G with one decimal, params in M
TABLE5 = {"resnet50_v1": "3.8", "resnet50_v1b": "4.1", "resnet50_v1c": "4.3", "resnet50_v1d": "4.3"}


@pytest.fixture(scope="module")
def table5():
    return {name: model_stats.measure(name, 224) for name in TABLE5}


def test_table5_rows_match_the_paper(table5):
    """Each count agrees with the paper's one-decimal figure to its last digit (ResNet-50's 3.8 is
    He et al. 2016's truncation of 3.86; -B's 4.1 rounds 4.09); 25 M parameters each (25.56-25.58)."""
    for name, printed in TABLE5.items():
        row = table5[name]
        assert row["paper"] == printed and row["agrees"], (name, row["macs"])
        assert abs(row["macs"] / 1e9 - float(printed)) <= 0.1
        assert 25e6 <= row["params"] < 26e6
    assert round(table5["resnet50_v1b"]["macs"] / 1e9, 1) == 4.1
    assert round(table5["resnet50_v1c"]["macs"] / 1e9, 1) == 4.3


def test_table5_differences_worked_out_by_hand(table5):
    """A -> B moves the stride of each downsampling block's first 1x1 conv (C_in -> m) onto the
    3x3: that 1x1 now runs on the H x H map instead of H/2 x H/2, + 0.75 * C_in * m * H^2, which is
    0.75 * 256*128*56^2 = 0.75 * 512*256*28^2 = 0.75 * 1024*512*14^2 = 77,070,336 per stage.
    B -> C replaces the 7x7 3->64 stem conv by 3x3 convs 3->32->32->64, all at 112x112.
    C -> D adds only an average pool to the shortcut (pooling is not a multiply-add)."""
    a, b, c, d = (table5[n]["macs"] for n in TABLE5)
    assert b - a == 3 * 77_070_336
    stem_7x7 = 49 * 3 * 64 * 112 ** 2
    deep_stem = 9 * (3 * 32 + 32 * 32 + 32 * 64) * 112 ** 2
    assert c - b == deep_stem - stem_7x7 == 239_640_576
    assert d == c
    # parameters: v1 has 1x1 conv biases (GluonCV's ResNetV1) that v1b lacks; v1c/v1d stems
    assert table5["resnet50_v1"]["params"] - table5["resnet50_v1b"]["params"] == sum(
        blocks * (width + 4 * width) for blocks, width in ((3, 64), (4, 128), (6, 256), (3, 512)))
    assert table5["resnet50_v1c"]["params"] == table5["resnet50_v1d"]["params"]


def test_main_prints_a_markdown_table_and_writes_json(tmp_path, capsys):
    rows = model_stats.main(["--models", "inceptionv3", "resnet18_v1@64", "--json", str(tmp_path / "s.json")])
    out = capsys.readouterr().out
    assert out.splitlines()[0].startswith("| model | input | params (M) | GMACs |")
    incep = next(line for line in out.splitlines() if line.startswith("| inceptionv3 | 299 |"))
    assert "| 23.83 | 5.713 | <25 |" in incep  # the paper: 5 G multiply-adds, < 25 M parameters
    assert json.load(open(tmp_path / "s.json")) == rows
    assert [(r["model"], r["input"]) for r in rows] == [("inceptionv3", 299), ("resnet18_v1", 64)]
    assert "paper" not in rows[1] and rows[1]["device"] == "meta"
    with pytest.raises(SystemExit, match="not in the zoo"):
        model_stats.main(["--models", "resnet9000"])


@pytest.mark.slow
def test_yolo3_matches_darknets_bflops():
    """Darknet prints 2 FLOPs per multiply-add of its convolutions: YOLOv3-320's 38.97 BFLOPs.
    The NMS has no meta implementation, so this runs on the CPU (about 15 s)."""
    row = model_stats.measure("yolo3_darknet53_coco", 320)
    assert row["device"] == "cpu" and row["agrees"]
    assert f"{2 * row['macs'] / 1e9:.2f}" == "38.97"
