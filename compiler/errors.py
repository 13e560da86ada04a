"""Errors a user can cause, each with the exit code the CLI returns for it."""

from __future__ import annotations


class EdgecError(Exception):
    exit_code = 2


class InputError(EdgecError):
    """Bad input: a missing or corrupt file, an unknown target or pass, mismatched calibration data."""

    exit_code = 2


class NegativeResult(EdgecError):
    """The tool ran, and the answer is no: fidelity below the gate, a regression, a goal unmet."""

    exit_code = 1


class ProviderError(EdgecError):
    """An execution provider the target requires (fallback policy `error`) is not available."""

    exit_code = 3


class DeviceError(EdgecError):
    """The device to benchmark on cannot be reached."""

    exit_code = 4
