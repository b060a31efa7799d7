"""Atomic writes: a file or a folder is built beside its target, then renamed into place, so a reader (or a
killed run) sees the old version or the new one, never a half-written one."""

from __future__ import annotations

import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


@contextmanager
def atomic_path(target: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path to write; on success it replaces ``target``, on error it is removed. The file gets
    the permissions of any new file (``0o666`` less the umask), not the owner-only ones of ``tempfile.mkstemp``:
    outputs are meant for the team that reads them."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_text(target: str | os.PathLike, text: str) -> None:
    with atomic_path(target) as tmp:
        tmp.write_text(text)


@contextmanager
def staged_folder(target: str | os.PathLike) -> Iterator[Path]:
    """Yield an empty folder beside ``target`` to build in; on success it takes the place of ``target`` (an
    existing ``target`` is moved aside first and removed after), on error it is removed.

    The folder gets the permissions of any new folder (``0o777`` less the umask), not the owner-only ones of
    ``tempfile.mkdtemp``: what it becomes is meant for the team that reads the outputs."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    build = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp"))
    try:
        build.chmod(0o777 & ~_umask())
        yield build
        if target.exists():
            old = target.with_name(f".{target.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(target, old)
            os.replace(build, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(build, target)
    finally:
        shutil.rmtree(build, ignore_errors=True)


def _umask() -> int:
    mask = os.umask(0)  # the only way to read it is to set it
    os.umask(mask)
    return mask
