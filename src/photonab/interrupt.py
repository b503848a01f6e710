"""Ctrl-C: one line, status 130, within a second, whatever photonab is doing.

A Ctrl-C in a terminal sends SIGINT to every process of the foreground job: photonab,
its synth worker processes and its local dask cluster. Only photonab itself should act
on it; the workers should not each print a traceback, and photonab should not spend
seconds closing a cluster politely (docs/reliability.md). So, when photonab runs as a
program (:func:`program`):

- the first SIGINT raises ``KeyboardInterrupt`` in the main thread as usual, so that
  outputs being written are removed (photonab.atomic) on the way out; it also starts a
  short grace timer after which the process ends with status 130 whatever it is doing
  (a kernel call, a wait on a cluster, a finalizer that swallowed the interrupt);
- a second SIGINT ends it at once;
- the exit is ``os._exit(130)`` once the interrupt has been reported: no atexit work (a
  dask cluster's close with its timeouts and log lines); worker processes photonab
  started (multiprocessing children) are killed first, so none outlives it or logs;
- processes forked from photonab ignore SIGINT (their parent decides), and processes
  started by :func:`without_sigint` (the local dask cluster) start with SIGINT blocked.

The one line is :data:`MESSAGE` on stderr, written once by :func:`announce`.
"""
from __future__ import annotations

import functools
import os
import signal
import sys
import threading

#: exit status of an interrupted run: 128 + SIGINT, what a shell shows for a Ctrl-C
STATUS = 130
#: the line an interrupted run prints on stderr
MESSAGE = "photonab: interrupted"
#: seconds between the first Ctrl-C and the exit, at most
GRACE = 0.7

_lock = threading.Lock()
_announced = False
_interrupted = False
_main_pid = None


def announce() -> None:
    """Write :data:`MESSAGE` to stderr: once per process (raw write, no stream lock to wait
    for) when running as the program, else with ``print`` each time."""
    global _announced
    if _main_pid is None:
        print(MESSAGE, file=sys.stderr)
        return
    with _lock:
        if _announced:
            return
        _announced = True
    try:
        os.write(2, (MESSAGE + "\n").encode())
    except OSError:
        pass


def _exit_now() -> None:
    announce()
    mp = sys.modules.get("multiprocessing")
    if mp is not None:  # our worker processes (synth pool, local dask cluster) end with us, silently
        try:
            for child in mp.active_children():
                child.kill()
        except Exception:  # on the way out: nothing more to do
            pass
    os._exit(STATUS)


def _on_sigint(signum, frame):
    global _interrupted
    if os.getpid() != _main_pid:
        return  # a worker forked from photonab: its parent decides
    if _interrupted:
        _exit_now()
    _interrupted = True
    timer = threading.Timer(GRACE, _exit_now)
    timer.daemon = True
    timer.start()
    raise KeyboardInterrupt


def pending() -> bool:
    """True once a Ctrl-C reached the program: long loops check it, so that an interrupt
    that Python dropped (raised inside a finalizer) still ends the run before its output."""
    return _interrupted


def program(main):
    """Decorate the command line's ``main(argv=None)``: when called as the program
    (``argv`` None), Ctrl-C behaves as the module docstring says. Called with an
    ``argv`` list (tests, scripts) it is ``main`` unchanged."""
    @functools.wraps(main)
    def run(argv=None):
        global _main_pid
        if argv is not None or threading.current_thread() is not threading.main_thread():
            return main(argv)
        if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:  # a background job: keep ignoring it
            return main(argv)
        _main_pid = os.getpid()
        previous = signal.signal(signal.SIGINT, _on_sigint)
        try:
            rc = main(argv)
        except KeyboardInterrupt:
            rc = STATUS
        finally:
            signal.signal(signal.SIGINT, previous)
        if _interrupted:
            try:
                sys.stdout.flush()
            except (OSError, ValueError):
                pass
            _exit_now()
        return rc
    return run


def without_sigint(make):
    """``make()`` called in a helper thread whose SIGINT is blocked, so that the threads
    and processes it starts (a local dask cluster's workers) never get the terminal's
    Ctrl-C: a blocked signal stays blocked across fork and exec. The calling thread waits
    (interruptibly) and gets the result or the exception."""
    result = {}

    def target():
        try:
            result["value"] = make()
        except BaseException as exc:  # handed to the caller
            result["error"] = exc

    if not hasattr(signal, "pthread_sigmask"):
        return make()
    try:  # started later from a blocked thread, it would unblock SIGINT there (multiprocessing does)
        from multiprocessing import resource_tracker
        quiet = "ignore::UserWarning:multiprocessing.resource_tracker"  # "leaked semaphores" after a Ctrl-C:
        before = os.environ.get("PYTHONWARNINGS")                       # it removes them; no need to say so
        os.environ["PYTHONWARNINGS"] = quiet if not before else f"{before},{quiet}"
        try:
            resource_tracker.ensure_running()
        finally:
            if before is None:
                os.environ.pop("PYTHONWARNINGS", None)
            else:
                os.environ["PYTHONWARNINGS"] = before
    except (ImportError, OSError, AttributeError):
        pass
    old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        thread = threading.Thread(target=target, name="photonab-without-sigint", daemon=True)
        thread.start()
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)
    while thread.is_alive():
        thread.join(0.05)
    if "error" in result:
        raise result["error"]
    return result["value"]
