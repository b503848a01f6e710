"""Outputs are written whole or not at all; the cache lock serialises processes."""
import multiprocessing as mp
import os
import time

import pytest

from photonab import atomic


def test_write_text_replaces_whole_and_leaves_no_sibling(tmp_path):
    out = tmp_path / "report.json"
    out.write_text("old")
    atomic.write_text(out, "new")
    assert out.read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.json"]


def test_failed_write_keeps_the_previous_file(tmp_path):
    out = tmp_path / "report.json"
    out.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic.atomic_path(out) as tmp:
            tmp.write_text("partial")
            raise RuntimeError("disk full")
    assert out.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.json"]


def test_temporary_sibling_keeps_the_suffix(tmp_path):
    with atomic.atomic_path(tmp_path / "plot.png") as tmp:
        assert tmp.suffix == ".png" and tmp.parent == tmp_path
        tmp.write_bytes(b"x")
    assert (tmp_path / "plot.png").read_bytes() == b"x"


def test_atomic_folder_replaces_an_existing_folder(tmp_path):
    target = tmp_path / "evt"
    target.mkdir()
    (target / "old.npy").write_text("old")
    with atomic.atomic_folder(target) as tmp:
        (tmp / "new.npy").write_text("new")
        assert not (target / "new.npy").exists()
    assert sorted(p.name for p in target.iterdir()) == ["new.npy"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["evt"]


def test_failed_folder_write_keeps_the_old_folder(tmp_path):
    target = tmp_path / "evt"
    target.mkdir()
    (target / "old.npy").write_text("old")
    with pytest.raises(KeyboardInterrupt):
        with atomic.atomic_folder(target) as tmp:
            (tmp / "half.npy").write_text("half")
            raise KeyboardInterrupt
    assert sorted(p.name for p in target.iterdir()) == ["old.npy"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["evt"]


def _hold(lock, log, pause):
    with atomic.file_lock(lock):
        with open(log, "a") as fh:
            fh.write(f"in {os.getpid()}\n")
        time.sleep(pause)
        with open(log, "a") as fh:
            fh.write(f"out {os.getpid()}\n")


def test_lock_serialises_processes(tmp_path):
    lock, log = tmp_path / "cache.lock", tmp_path / "log"
    procs = [mp.get_context("spawn").Process(target=_hold, args=(lock, log, 0.3)) for _ in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(30)
    lines = log.read_text().split()
    # in/out strictly alternate: never two holders at once
    assert lines[0::4] == ["in"] * 3 and lines[2::4] == ["out"] * 3


def test_lock_of_a_killed_holder_does_not_block(tmp_path):
    lock = tmp_path / "cache.lock"
    p = mp.get_context("spawn").Process(target=_hold, args=(lock, tmp_path / "log", 60))
    p.start()
    deadline = time.time() + 20
    while not (tmp_path / "log").exists() and time.time() < deadline:
        time.sleep(0.05)
    p.kill()
    p.join()
    t0 = time.perf_counter()
    with atomic.file_lock(lock):
        pass
    assert time.perf_counter() - t0 < 5
