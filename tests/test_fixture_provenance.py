"""Every committed GluonCV fixture records how it was made: its generator, the gluoncv and mxnet
versions and a date (tests/fixtures/PROVENANCE.json, written by tests/fixtures/make_provenance.py),
and its recorded sha256 is the file's (a fixture regenerated without the record fails here)."""
import hashlib
import json
import os

import pytest

HERE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures")
TABLE = json.load(open(os.path.join(HERE, "PROVENANCE.json")))
FILES = sorted(n for n in os.listdir(HERE) if n.endswith((".npz", ".params")))


@pytest.mark.parametrize("name", FILES)
def test_fixture_records_its_generator_versions_and_date(name):
    assert name in TABLE, f"{name}: not in PROVENANCE.json (run tests/fixtures/make_provenance.py)"
    entry = TABLE[name]
    assert os.path.isfile(os.path.join(os.path.dirname(HERE), "..", entry["generator"]))
    assert "gluoncv 0.10.5" in entry["made_by"] and "mxnet 1.9.1" in entry["made_by"]
    assert any(ch.isdigit() for ch in entry["made_by"].split("mxnet 1.9.1")[-1]), entry["made_by"]  # a date
    with open(os.path.join(HERE, name), "rb") as f:
        assert hashlib.sha256(f.read()).hexdigest() == entry["sha256"], f"{name} changed since its record"
