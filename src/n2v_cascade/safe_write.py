"""Safe output: write files atomically, never overwrite or lose data by accident.

A write goes to a hidden temporary path in the destination's folder, is flushed to disk and
renamed into place, so a crash leaves the old file or the new one, never half a file. An
existing output is refused unless the caller passes ``overwrite``, an input is refused even
then, and a folder is never replaced.
"""

from __future__ import annotations

import os
import secrets
import shutil
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from n2v_cascade.errors import InputError, N2VError, OutputExistsError, error_reason
from n2v_cascade.formats import check_suffix


@contextmanager
def atomic_path(path: str | Path, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary path next to ``path`` and move it into place on success.

    The temporary path is hidden, in the same folder (so ``os.replace`` is atomic) and has
    the same suffix; it does not exist yet. On normal exit it is fsynced and renamed onto
    ``path``; on an exception it is deleted (file or folder). An existing ``path`` is
    refused unless ``overwrite`` (OutputExistsError); an existing folder is always refused.
    """
    path = Path(path)
    source = str(path)
    _check_destination(path, overwrite, source)
    parent = path.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"{source}: cannot create folder {parent} ({error_reason(exc)})") from exc
    tmp = path.with_name(f".{path.name}.tmp-{secrets.token_hex(8)}{path.suffix}")  # hidden
    try:
        yield tmp
        if not os.path.lexists(tmp):
            raise RuntimeError(f"{source}: nothing was written to the temporary path {tmp.name}")
        _fsync(tmp)
        _check_destination(path, overwrite, source)  # it may have appeared meanwhile
        try:
            os.replace(tmp, path)
        except OSError as exc:
            raise InputError(f"{source}: cannot write file ({error_reason(exc, path)})") from exc
    except BaseException:
        _remove(tmp)
        raise
    _fsync(parent)


def atomic_write_text(path: str | Path, text: str, overwrite: bool = False) -> Path:
    """Write ``text`` as UTF-8 atomically (see :func:`atomic_path`); return the path."""
    path = Path(path)
    with write_errors(str(path)), atomic_path(path, overwrite=overwrite) as tmp:
        with open(tmp, "x", encoding="utf-8", newline="\n") as fh:
            fh.write(text)
    return path


def check_output_path(path: Path, suffixes: tuple[str, ...], overwrite: bool,
                      protect: Iterable[Path]) -> str:
    """Refuse an output of another type, an input (``protect``, even with ``overwrite``),
    a folder, or an existing file without ``overwrite``; return the lower-case suffix."""
    source = str(path)
    suffix = check_suffix(path, source, suffixes, "output")
    for other in protect:
        if _same_file(path, Path(other)):
            raise InputError(f"{source}: is an input file; refusing to overwrite it")
    _check_destination(path, overwrite, source)
    return suffix


def check_output_folder(out: Path, *, busy: bool, hint: str,
                        error: type[N2VError] = InputError) -> None:
    """Refuse an output path that is a file, or a ``busy`` folder (``hint`` says what to do).

    ``busy`` is the caller's rule (a non-empty folder, a finished model, ...); nothing is
    created or removed here.
    """
    if out.exists() and not out.is_dir():
        raise error(f"{out}: output path exists and is not a folder")
    if busy:
        raise OutputExistsError(f"{out}: {hint}")



def _same_file(a: Path, b: Path) -> bool:
    if os.path.normcase(os.path.realpath(a)) == os.path.normcase(os.path.realpath(b)):
        return True
    try:
        return os.path.samefile(a, b)  # hard links, case-insensitive file systems
    except OSError:
        return False


def _check_destination(path: Path, overwrite: bool, source: str) -> None:
    if path.is_dir():
        raise InputError(f"{source}: is a folder; refusing to replace it")
    if os.path.lexists(path) and not overwrite:
        raise OutputExistsError(f"{source}: already exists (pass --overwrite to replace it)")


@contextmanager
def write_errors(source: str) -> Iterator[None]:
    """Report OS failures while writing (disk full, permission denied) in one line."""
    try:
        yield
    except N2VError:
        raise
    except OSError as exc:
        raise InputError(f"{source}: cannot write file ({error_reason(exc)})") from exc


def _fsync(path: Path) -> None:
    """Flush ``path`` (file or folder) to disk; best effort, some systems refuse."""
    with suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _remove(path: Path) -> None:
    with suppress(OSError):
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)
