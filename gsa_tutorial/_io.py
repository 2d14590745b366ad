"""Atomic file writes that leave nothing behind, shared by :mod:`.train`, :mod:`.data` and :mod:`.evaluate`.

One helper for one idea: every file the package writes (checkpoints, metrics, downloads,
data caches) goes through :func:`atomic_write`:

* the bytes go to a hidden temporary file beside the target, ``.<name>.<pid>.<token><suffix>``,
  which is renamed onto the target (``os.replace``, atomic on one file system) only when it is
  complete; on any Python-level failure (an exception, Ctrl-C, SIGTERM turned into
  ``SystemExit``) it is removed at once;
* a process killed with SIGKILL (or a power cut) cannot clean up, so the next write to the
  same target first removes the temporary files of that target left by processes that are
  no longer alive (:func:`remove_stale_temporaries`): a rerun never leaves a stray file;
* the final file has the normal permissions of a new file, ``0o666 & ~umask`` (``0644``
  under the usual umask 022), not the ``0600`` of :func:`tempfile.mkstemp`.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

__all__ = ["atomic_write", "atomic_write_text", "atomic_torch_save", "remove_stale_temporaries", "temporaries_of", "file_mode"]

# Temporary files this process is writing right now (so a cleanup never removes them).
_IN_FLIGHT: set[Path] = set()


def file_mode() -> int:
    """The mode a new file gets under the current umask: ``0o666 & ~umask``."""
    try:
        with open("/proc/self/status") as status:  # Linux: read the umask without changing it
            for line in status:
                if line.startswith("Umask:"):
                    return 0o666 & ~int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)  # elsewhere: set and restore (not thread-safe, but brief)
    os.umask(mask)
    return 0o666 & ~mask


def _pattern(target: Path, suffix: str) -> re.Pattern[str]:
    return re.compile(re.escape(f".{target.name}.") + r"(\d+)\.[0-9a-f]+" + re.escape(suffix) + "$")


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def temporaries_of(target: str | os.PathLike, suffix: str = ".tmp") -> list[Path]:
    """The temporary files of ``target`` (any process) that :func:`atomic_write` names with ``suffix``."""
    target = Path(target)
    if not target.parent.is_dir():
        return []
    pattern = _pattern(target, suffix)
    return sorted(p for p in target.parent.iterdir() if pattern.match(p.name))


def remove_stale_temporaries(target: str | os.PathLike, suffix: str = ".tmp") -> list[Path]:
    """Remove the temporary files of ``target`` left by killed processes; return what was removed.

    A temporary file belongs to a dead process when the process id in its name is not alive,
    or is this process's own id but this process is not writing it (the id was reused).
    """
    removed = []
    pattern = _pattern(Path(target), suffix)
    for path in temporaries_of(target, suffix):
        match = pattern.match(path.name)
        assert match is not None
        pid = int(match.group(1))
        stale = path not in _IN_FLIGHT if pid == os.getpid() else not _alive(pid)
        if stale:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
                removed.append(path)
    return removed


@contextlib.contextmanager
def atomic_write(
    path: str | os.PathLike, mode: str = "wb", *, suffix: str = ".tmp", newline: str | None = None
) -> Iterator[IO[Any]]:
    """Open a temporary file beside ``path``; on a clean exit rename it onto ``path``.

    Args:
        path: the final file (its folder is created if needed).
        mode: ``"wb"`` or ``"w"``.
        suffix: of the temporary file (``".tmp"``; downloads use ``".part"``).
        newline: as in :func:`open` (text mode only).

    Yields:
        The open temporary file. Nothing exists at ``path`` until the block has finished
        without an exception; on an exception the temporary file is removed.
    """
    if mode not in ("wb", "w"):
        raise ValueError(f"atomic_write mode must be 'wb' or 'w', got {mode!r}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path, suffix)
    tmp = path.parent / f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}{suffix}"
    _IN_FLIGHT.add(tmp)
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.fchmod(fd, file_mode())
            kwargs: dict[str, Any] = {} if "b" in mode else {"newline": newline, "encoding": "utf-8"}
            with os.fdopen(fd, mode, **kwargs) as f:
                yield f
                f.flush()
                os.fsync(f.fileno())
            # Inside the try: a rename that fails (the target is a folder, a read-only file
            # system, another device) must not leave the complete temporary file behind.
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
            raise
    finally:
        _IN_FLIGHT.discard(tmp)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` (UTF-8, newlines as given) to ``path`` through :func:`atomic_write`."""
    with atomic_write(path, "w", newline="") as f:
        f.write(text)


def atomic_torch_save(obj: Any, path: str | os.PathLike, *, suffix: str = ".tmp") -> None:
    """``torch.save(obj)`` to ``path`` through :func:`atomic_write` (never a half-written file)."""
    import torch  # here: the rest of this module needs only the standard library

    with atomic_write(path, "wb", suffix=suffix) as f:
        torch.save(obj, f)
