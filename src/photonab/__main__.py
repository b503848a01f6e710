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
    return cli_main()


if __name__ == "__main__":
    sys.exit(main())
