"""The package works installed, not only from this checkout: ``pip install --target`` of a plain
(not editable) copy, then, from an empty directory, import every module, read the zoo table
(package data), build a zoo model, generate the built-in data under ``GLUON_BOF_HOME`` and
evaluate on it. Nothing may be looked up through the source tree (``__file__`` three levels up)."""
import os
import subprocess
import sys
import textwrap


ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

CHECK = textwrap.dedent('''
    import importlib, os, pkgutil, sys
    import gluon_bof
    site = sys.argv[1]
    assert gluon_bof.__file__.startswith(site), gluon_bof.__file__  # the installed copy, not the checkout
    names = [m.name for m in pkgutil.walk_packages(gluon_bof.__path__, "gluon_bof.")]
    for name in names:
        importlib.import_module(name)
    from gluon_bof.model_zoo import get_model, zoo_table
    rows = zoo_table.read_table()
    assert zoo_table.DEFAULT_TABLE.startswith(site) and any(r["name"] == "yolo3_darknet53_voc" for r in rows)
    from gluon_bof.utils.home import default_data_root
    root = default_data_root()
    assert root.startswith(os.environ["GLUON_BOF_HOME"]), root
    from gluon_bof.data.synthetic import generate
    generate(root, num_trainval=4, num_test=4, seed=3)
    import torch
    from gluon_bof.data import build
    from gluon_bof.engine import evaluate
    from gluon_bof.evaluation import make_metric
    _, val = build.build_datasets("voc", None, train=False)
    torch.manual_seed(0)
    net = get_model("yolo3_mobilenet0.25_custom", classes=list(val.classes), channels=[16, 8, 8]).eval()
    loader = build.yolo3_val_loader(val, batch_size=2, data_shape=64, num_workers=0)
    names, values = evaluate(net, loader, make_metric("voc07", val), device=torch.device("cpu"))
    assert names[-1] == "mAP" and 0.0 <= values[-1] <= 1.0
    print(len(names), "modules ok")
''')


def test_installed_copy_works_from_an_empty_directory(tmp_path):
    site, home, empty = tmp_path / "site", tmp_path / "home", tmp_path / "empty"
    empty.mkdir()
    pip = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                          "--disable-pip-version-check", "--target", str(site), ROOT],
                         capture_output=True, text=True, timeout=600)
    assert pip.returncode == 0, pip.stderr[-2000:]
    assert not (site / "gluon_bof" / "__editable__").exists()
    env = dict(os.environ, PYTHONPATH=str(site), GLUON_BOF_HOME=str(home))
    env.pop("GLUON_BOF_DATA", None)
    run = subprocess.run([sys.executable, "-c", CHECK, str(site)], cwd=empty, env=env, capture_output=True,
                         text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-3000:]
    assert run.stdout.strip().endswith("modules ok")
    assert os.path.isdir(home / "datasets" / "synthetic" / "VOC2007")
