"""User-facing errors.

Every error a user can cause (bad file, bad option, bad model folder) is raised as a
subclass of :class:`N2VError` with a one-line message that names the file or field and
the problem. The CLI turns these into ``error: <message>`` and exit code 2, never a
traceback.
"""

from __future__ import annotations


class N2VError(Exception):
    """Base class of every error meant to be shown to the user in one line."""


class InputError(N2VError, ValueError):
    """A bad input file, array or option value."""


class OutputExistsError(N2VError, FileExistsError):
    """An output path exists and ``overwrite`` was not given."""


class ModelError(N2VError):
    """A saved-model folder that cannot be loaded (missing weights, corrupt config, ...)."""


class TrainingDivergedError(N2VError):
    """Training produced a NaN/Inf loss."""
