"""User-facing errors.

Every error a user can cause (bad file, bad option, bad model folder) is raised as a
subclass of :class:`N2VError` with a one-line message that names the file or field and
the problem. The CLI turns these into ``error: <message>`` and exit code 2, never a
traceback.

Messages are written with the command-line flags (``--overwrite``, ``--resume``);
``str(error)`` names the matching Python keyword arguments instead (``overwrite=True``),
which is what a caller of the Python API can act on, except inside a quoted command, and
:meth:`N2VError.cli_message` keeps the flags for the CLI.
"""

from __future__ import annotations

import re
from pathlib import Path

# Flags whose Python equivalent is a keyword argument of the same name; a quoted command
# ('n2v-cascade train ... --resume') is left as it is.
_KEYWORD_FLAGS = re.compile(r"'[^']*'|--(overwrite|resume)\b")


def _keyword(match: re.Match[str]) -> str:
    return match[0] if match[1] is None else f"{match[1]}=True"


class N2VError(Exception):
    """Base class of every error meant to be shown to the user in one line."""

    def __str__(self) -> str:
        return _KEYWORD_FLAGS.sub(_keyword, super().__str__())

    def cli_message(self) -> str:
        """The message as the command line shows it: with ``--overwrite``-style flags."""
        return super().__str__()


class InputError(N2VError, ValueError):
    """A bad input file, array or option value."""


class OutputExistsError(N2VError, FileExistsError):
    """An output path exists and ``overwrite`` was not given."""


class ModelError(N2VError):
    """A saved-model folder that cannot be loaded (missing weights, corrupt config, ...)."""


class TrainingDivergedError(N2VError):
    """Training produced a NaN/Inf loss."""


def error_reason(exc: BaseException, path: Path | None = None) -> str:
    """One short line explaining ``exc`` without repeating the file name."""
    if isinstance(exc, OSError) and exc.strerror:
        text = exc.strerror
    else:
        lines = str(exc).strip().splitlines()
        text = lines[0] if lines else ""
    if path is not None:
        text = text.replace(repr(str(path)), "").replace(str(path), "").strip(" :")
    if "can not handle the given uri" in text:  # imageio: no plugin understood the bytes
        text = "unrecognised content"
    text = text or type(exc).__name__
    return text if len(text) <= 150 else text[:147] + "..."
