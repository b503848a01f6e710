"""Argument checks shared by the generators: errors a user can act on (InputError)."""
from __future__ import annotations

import math

import numpy as np

from ..errors import InputError


def check_int(name, value, lo, hi=None) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise InputError(f"{name} must be an integer, got {value!r}")
    value = int(value)
    if value < lo or (hi is not None and value > hi):
        rng = f"in {lo}..{hi}" if hi is not None else f">= {lo}"
        raise InputError(f"{name} = {value} must be {rng}")
    return value


def check_fraction(name, value) -> float:
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise InputError(f"{name} must be a fraction in [0, 1], got {value!r}") from None
    if not 0.0 <= value <= 1.0:  # also refuses NaN
        raise InputError(f"{name} = {value} must be a fraction in [0, 1]")
    return value


def check_finite(name, value) -> float:
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise InputError(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(value) or value < 0:
        raise InputError(f"{name} = {value} must be finite and >= 0")
    return value
