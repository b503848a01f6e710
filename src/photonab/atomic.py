"""Outputs written whole or not at all, and a lock for caches that processes share.

Everything photonab writes (reports, plots, synthetic events, the demo cache, harness
results) goes through here: the bytes go to a hidden temporary sibling of the target,
are flushed to disk, and only then is the sibling renamed over the target. A rename
within one folder is atomic, so a reader sees the previous file or the new one, never
a part of either, and a failed or interrupted write leaves no partial file behind
(docs/reliability.md).
"""
from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path

try:
    import fcntl
except ImportError:  # not on Windows: the lock is then a no-op (single-user machines)
    fcntl = None


def _fsync_dir(folder: Path) -> None:
    """Make a rename in ``folder`` durable (no-op where directories cannot be opened)."""
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _temporary_sibling(path: Path, folder: bool) -> Path:
    # the real suffix stays last, so tools that infer a format from it (savefig) still can
    prefix = f".{path.stem}.tmp-"
    umask = os.umask(0)
    os.umask(umask)
    if folder:
        tmp = tempfile.mkdtemp(prefix=prefix, suffix=path.suffix, dir=path.parent)
        os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes 0700; a shared cache is as readable as any folder
        return Path(tmp)
    fd, tmp = tempfile.mkstemp(prefix=prefix, suffix=path.suffix, dir=path.parent)
    os.close(fd)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; a report is as readable as any file
    return Path(tmp)


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary sibling path to write ``path`` through.

    When the block ends normally the temporary file is flushed and renamed to ``path``;
    when it raises (including ``KeyboardInterrupt``) it is removed and ``path`` is left
    as it was.
    """
    path = Path(path)
    tmp = _temporary_sibling(path, folder=False)
    try:
        yield tmp
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)


def write_text(path, text: str) -> None:
    """Write ``text`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_bytes(path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


@contextlib.contextmanager
def atomic_folder(path):
    """Yield a temporary sibling folder to fill; on success it replaces ``path``.

    An existing ``path`` is moved aside and removed only after the new folder is in
    place, so a reader finds the old folder, the new one, or (for an instant) none,
    never a folder half written.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temporary_sibling(path, folder=True)
    try:
        yield tmp
        old = None
        if path.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{path.name}.old-", dir=path.parent))
            os.replace(path, old / path.name)
        os.replace(tmp, path)
        _fsync_dir(path.parent)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


@contextlib.contextmanager
def file_lock(path, waiting=None):
    """Hold an exclusive lock on ``path`` (created if needed) for the block.

    ``flock`` locks belong to the open file: the kernel drops them when the holder
    exits or is killed, so a stale lock never blocks a later process. Waiting can be
    interrupted with Ctrl-C. ``waiting()``, when given, is called once before waiting
    for a lock that another process holds (to say so).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                if waiting is not None:
                    waiting()
                fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock
