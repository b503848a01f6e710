"""Errors a user can act on: they name the file and say what is wrong."""


class InputError(ValueError):
    """Bad input (file, array, label, option); the message is meant for the user."""
