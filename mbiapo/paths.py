"""Checks on the paths a command will write, run before any work starts: each problem is
one ``MbiapoError`` line naming the flag, and nothing is created by the checks; and
``written``, around the writing itself, for writes that fail (a full disk) or are
interrupted."""

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from mbiapo.errors import MbiapoError


def check_writable_folder(path: Path, flag: str = "--out") -> None:
    """``path`` is, or can be created as, a folder this process may write in."""
    if path.exists() and not path.is_dir():
        raise MbiapoError(f"{flag} {path} is a file, not a folder")
    existing = path.absolute()
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise MbiapoError(f"{flag} {path}: cannot create it, {existing} is a file")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise MbiapoError(f"{flag} {path}: no permission to write in {existing}")


def check_writable_file(path: Path, flag: str = "--out") -> None:
    """``path`` can be written (atomically, through a temporary file beside it) in an
    existing folder."""
    if path.is_dir():
        raise MbiapoError(f"{flag} {path} is a folder; give a file name")
    folder = path.absolute().parent
    if not folder.is_dir():
        raise MbiapoError(f"{flag} {path}: folder {folder} does not exist")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise MbiapoError(f"{flag} {path}: no permission to write in {folder}")


def check_new_file(path: Path, force: bool, flag: str = "--out") -> None:
    """A writable ``path`` that does not exist yet, unless ``force`` allows replacing it."""
    check_writable_file(path, flag)
    if path.exists() and not force:
        raise MbiapoError(f"{path} exists; choose another {flag} or pass --force")


def can_write(folder: Path) -> bool:
    """Whether ``check_writable_folder`` would pass."""
    try:
        check_writable_folder(folder)
    except MbiapoError:
        return False
    return True


def user_cache() -> Path:
    """Where mbiapo caches what it computes when the natural place is read-only:
    ``$XDG_CACHE_HOME/mbiapo`` (default ``~/.cache/mbiapo``)."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "mbiapo"


def temporary(path: Path) -> Path:
    """The file beside ``path`` that an atomic write of it goes through (then os.replace)."""
    return path.with_name(path.name + ".tmp")


def _write_error(path: Path, e: OSError) -> str:
    """One line for a failed write: "no space left on device writing PATH"."""
    if e.errno:
        reason = os.strerror(e.errno)
        return f"{reason[:1].lower()}{reason[1:]} writing {path}"
    return f"cannot write {path} ({(str(e) or type(e).__name__).splitlines()[0]})"


@contextlib.contextmanager
def written(path: Path, *partial: Path) -> Iterator[None]:
    """Around the writing of ``path``: if it fails or Ctrl-C cuts it short, the ``partial``
    files it leaves (its temporary file...) are removed, so a full disk is not kept full
    and nothing half-written stays behind; an OSError becomes one ``_write_error`` line."""
    try:
        yield
    except (Exception, KeyboardInterrupt) as e:  # failures and Ctrl-C; a kill cleans nothing
        for name in partial:
            with contextlib.suppress(OSError):
                name.unlink(missing_ok=True)
        if isinstance(e, OSError):
            raise MbiapoError(_write_error(path, e)) from None
        raise
