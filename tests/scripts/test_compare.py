"""scripts/compare.py: deltas by hand and the sorted two-colour bar chart."""
import json

import pytest

import compare
from gluon_bof.utils.viz import plot_ap_delta


def _write(path, results):
    with open(path, "w") as f:
        json.dump({"model": "m", "metric": "voc07", "results": results}, f)
    return str(path)


def test_deltas_and_chart(tmp_path, capsys):
    a = _write(tmp_path / "a.json", {"416": {"cat": 0.5, "dog": 0.7, "car": 0.2, "mAP": 0.4667}})
    b = _write(tmp_path / "b.json", {"416": {"cat": 0.6, "dog": 0.65, "car": 0.2, "mAP": 0.4833},
                                     "608": {"cat": 0.0, "mAP": 0.0}})
    rows = compare.main([a, b, "--out", str(tmp_path / "d.png")])
    assert [r[0] for r in rows] == ["mAP", "cat", "dog", "car"]  # summary first, then A's order
    assert rows[0][3] == pytest.approx(0.0166) and rows[1][3] == pytest.approx(0.1)
    assert rows[2][3] == pytest.approx(-0.05) and rows[3][3] == 0.0
    assert (tmp_path / "d.png").stat().st_size > 1000
    assert "+0.1000" in capsys.readouterr().out


def test_history_json_and_errors(tmp_path):
    hist = tmp_path / "h.json"
    hist.write_text(json.dumps([{"epoch": 0, "val": {"a": 0.1, "mAP": 0.1}}, {"epoch": 1},
                                {"epoch": 2, "val": {"a": 0.3, "mAP": 0.3}}]))
    b = _write(tmp_path / "b.json", {"last": {"a": 0.5, "mAP": 0.5}})
    rows = compare.main([str(hist), b, "--out", str(tmp_path / "d.png")])
    assert rows[0] == ("mAP", 0.3, 0.5, pytest.approx(0.2))  # the last validated epoch
    with pytest.raises(SystemExit, match="no results for '999'"):
        compare.main([str(hist), b, "--key", "999"])
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(SystemExit, match="bad.json: cannot read"):
        compare.main([str(tmp_path / "bad.json"), b])


def test_bars_sorted_gain_to_loss_and_nan_dropped(tmp_path):
    pairs = plot_ap_delta(["a", "b", "c", "d"], [-0.1, 0.3, float("nan"), 0.05], str(tmp_path / "x.png"))
    assert pairs == [("b", 0.3), ("d", 0.05), ("a", -0.1)]


def test_says_the_size_it_compared_and_refuses_different_image_sets(tmp_path, capsys):
    def write(path, sha1, n):
        with open(path, "w") as f:
            json.dump({"model": "m", "metric": "voc07", "size_header": "data shape",
                       "images": {"num_images": n, "sha1": sha1}, "results": {"416": {"cat": 0.5, "mAP": 0.5}}}, f)
        return str(path)

    a, same, other = write(tmp_path / "a.json", "x", 250), write(tmp_path / "s.json", "x", 250), \
        write(tmp_path / "o.json", "y", 250)
    compare.main([a, same, "--out", str(tmp_path / "d.png")])
    assert "compared at data shape 416 (voc07); both scored the same 250 images" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="image sets differ"):
        compare.main([a, other, "--out", str(tmp_path / "d.png")])
    compare.main([a, other, "--allow-different-images", "--out", str(tmp_path / "d.png")])
    assert "image sets differ (--allow-different-images)" in capsys.readouterr().out
