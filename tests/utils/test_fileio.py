import pytest

from gluon_bof.utils.fileio import atomic_open


def test_atomic_open_replaces_on_success_and_keeps_old_file_on_error(tmp_path):
    path = tmp_path / "sub" / "table.csv"  # the parent directory is created
    with atomic_open(path, "w", newline="") as f:
        f.write("a,b\n")
    assert path.read_text() == "a,b\n"
    with pytest.raises(RuntimeError):
        with atomic_open(path, "w") as f:
            f.write("half written")
            raise RuntimeError("crash mid-write")
    assert path.read_text() == "a,b\n"
    assert sorted(p.name for p in path.parent.iterdir()) == ["table.csv"]  # no temporary file left
