"""``python -m photonab`` and the ``photonab`` command."""
import gc
import os
import sys


def main() -> int:
    # The command never calls BLAS: an idle OpenBLAS thread pool per core only costs
    # start-up time (set before numpy loads; a user's own setting wins).
    for var in ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, "1")
    # A short-lived process whose big data live in memory maps, not Python objects:
    # collecting garbage during the run only costs time.
    gc.disable()
    from .cli import main as cli_main
    rc = cli_main()
    exit_now(rc)
    return rc


def exit_now(rc: int) -> None:
    """End the finished command at once, skipping the interpreter's teardown (freeing every
    module and object, the OpenMP pool: about 15 ms, docs/kernels.md "Start-up and the whole
    process"). Its output is flushed first and its files are closed already (the JSON and
    plot writers close theirs, an engine is closed when its command ends). Returns instead,
    for the normal exit, when something may still want that exit: a tracer or profiler
    (coverage, cProfile write their data then), a thread that is not a daemon, an output
    that cannot be flushed (the normal exit reports it as before)."""
    import threading
    if not isinstance(rc, int) or sys.gettrace() is not None or sys.getprofile() is not None:
        return
    if any(t is not threading.main_thread() and not t.daemon for t in threading.enumerate()):
        return
    try:
        for stream in (sys.stdout, sys.stderr):
            if stream is not None:
                stream.flush()
    except (OSError, ValueError):
        return
    os._exit(rc)


if __name__ == "__main__":
    sys.exit(main())
