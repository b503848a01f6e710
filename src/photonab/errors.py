"""Errors a user can act on: they name the file and say what is wrong."""


class InputError(ValueError):
    """Bad input (file, array, label, option); the message is meant for the user."""


class ClusterError(RuntimeError):
    """A distributed run failed on the cluster's side (scheduler or workers lost, workers
    frozen or dying): no table was computed; the message says what happened."""
