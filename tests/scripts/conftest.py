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
