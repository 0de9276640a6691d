import os

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


def test_written_files_honour_the_umask(tmp_path):
    import stat

    from gluon_bof.utils.fileio import atomic_open

    old = os.umask(0o027)
    try:
        with atomic_open(tmp_path / "a.bin") as f:
            f.write(b"x")
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(tmp_path / "a.bin").st_mode) == 0o640  # 0666 & ~027, not mkstemp's 0600


def test_a_killed_writers_temporary_is_removed_a_live_ones_kept(tmp_path):
    """A process SIGKILLed inside atomic_open leaves its temporary (up to a checkpoint's size);
    remove_stale_temporaries deletes it, and leaves alone a temporary this live process writes."""
    import signal
    import subprocess
    import sys
    import time

    from gluon_bof.utils.fileio import atomic_open, remove_stale_temporaries

    code = ("import sys, time\nfrom gluon_bof.utils.fileio import atomic_open\n"
            "with atomic_open(sys.argv[1]) as f:\n    f.write(b'x' * 1000); f.flush(); print('open', flush=True)\n"
            "    time.sleep(60)\n")
    child = subprocess.Popen([sys.executable, "-c", code, str(tmp_path / "ck.pth")], stdout=subprocess.PIPE, text=True)
    assert child.stdout.readline().strip() == "open"
    child.send_signal(signal.SIGKILL)
    child.wait()
    left = [p.name for p in tmp_path.iterdir()]
    assert len(left) == 1 and left[0].startswith(".tmp-") and not (tmp_path / "ck.pth").exists()
    with atomic_open(tmp_path / "mine.pth") as f:  # a write in progress in this (live) process
        f.write(b"y")
        assert remove_stale_temporaries(str(tmp_path)) == 1
        assert len([p for p in tmp_path.iterdir() if p.name.startswith(".tmp-")]) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine.pth"]
    legacy = tmp_path / ".tmp-abc123.pth"  # a temporary from before writer ids: stale after an hour
    legacy.write_bytes(b"z")
    assert remove_stale_temporaries(str(tmp_path)) == 0
    os.utime(legacy, (time.time() - 7200, time.time() - 7200))
    assert remove_stale_temporaries(str(tmp_path)) == 1
