"""Errors a user can act on: they name the file and say what is wrong."""


class InputError(ValueError):
    """Bad input (file, array, label, option); the message is meant for the user."""


#: exit code of a run whose input changed while it was read: sysexits' EX_IOERR (74), an
#: I/O condition that a rerun on complete files can cure, unlike bad input (64) or lost
#: workers (70) (docs/reliability.md)
EXIT_INPUT_CHANGED = 74


class InputChangedError(InputError):
    """An input file changed (shrank, was replaced or rewritten) while it was being read;
    the message names the file, and no result of the run was kept."""


class ClusterError(RuntimeError):
    """A distributed run failed on the cluster's side (scheduler or workers lost, workers
    frozen or dying): no table was computed; the message says what happened."""
