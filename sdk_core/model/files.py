"""Files the SDK reads and writes, handled so that nothing is lost.

- :func:`check_output` runs before any work: an output that is a directory, a FIFO or a
  device, that lies in a missing or read-only directory, or that is also an input of the
  same command is refused at once, not after an hour of training.
- :func:`atomic_write` writes through a temporary file in the same directory, ``fsync``s it,
  gives it the mode the umask implies, renames it over the target and ``fsync``s the
  directory: a crash leaves either the old file or the new one. Temporary files left by a
  writer that was killed are swept on the next save of the same target.
- :func:`read_text` and :func:`read_npy` say what is wrong with an input ("is a
  directory", "permission denied", "not UTF-8", "truncated") and read a ``.npy`` header
  before allocating anything.
"""

from __future__ import annotations

import errno
import os
import re
import stat
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import SdkError

PathLike = str | os.PathLike[str]
NPY_DTYPES = "biuf"  # bool, ints, unsigned ints, floats: what a model takes as input


class FileError(SdkError, OSError):
    """A file cannot be read or written as asked."""


def _why(exc: OSError) -> str:
    return {
        errno.EACCES: "permission denied",
        errno.EPERM: "permission denied",
        errno.EISDIR: "is a directory",
        errno.ENOENT: "does not exist",
        errno.ENOSPC: "no space left on the device",
        errno.EROFS: "read-only file system",
    }.get(exc.errno or 0, exc.strerror or type(exc).__name__)


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


def check_output(path: PathLike, reads: Iterable[PathLike | None] = (), what: str = "output") -> Path:
    """Refuse an output ``path`` that cannot be written, or that is one of the files the
    command ``reads``, before any work is done. Returns the path."""
    target = Path(path)
    for source in reads:
        if source is not None and (_same_file(target, Path(source)) or target.resolve() == Path(source).resolve()):
            raise FileError(f"cannot write the {what} '{target}': it is also an input of this command")
    if target.exists() or target.is_symlink():
        mode = target.stat().st_mode if target.exists() else 0
        if stat.S_ISDIR(mode):
            raise FileError(f"cannot write the {what} '{target}': is a directory")
        if not stat.S_ISREG(mode):
            raise FileError(f"cannot write the {what} '{target}': not a regular file (a FIFO, device or socket)")
    parent = target.parent
    if not parent.is_dir():
        raise FileError(f"cannot write the {what} '{target}': directory '{parent}' does not exist")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise FileError(f"cannot write the {what} '{target}': permission denied in '{parent}'")
    return target


def _temp_prefix(target: Path) -> str:
    return f".{target.name}."


def sweep_temporaries(target: Path) -> list[Path]:
    """Remove temporary files of ``target`` left by writers that are no longer running."""
    removed: list[Path] = []
    pattern = re.compile(re.escape(_temp_prefix(target)) + r"(\d+)\.[^.]+\.tmp$")
    try:
        names = os.listdir(target.parent)
    except OSError:
        return removed
    for name in names:
        m = pattern.match(name)
        if m is None or _alive(int(m.group(1))):
            continue
        try:
            (target.parent / name).unlink()
            removed.append(target.parent / name)
        except OSError:
            pass
    return removed


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path: PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` so that a crash leaves the previous file or the new one,
    never a torn one (see the module docstring)."""
    target = check_output(path)
    sweep_temporaries(target)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f"{_temp_prefix(target)}{os.getpid()}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, target)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise FileError(f"cannot write '{target}': {_why(exc)}") from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_directory(target.parent)


def _fsync_directory(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some file systems cannot sync a directory; the rename is still atomic
    finally:
        os.close(fd)


def check_input(path: PathLike, what: str = "input") -> Path:
    """An existing, readable regular file, or one clear error saying what is wrong.

    Every reader of a user's file calls this first: the type comes from ``os.stat``, before
    anything opens the path, so a FIFO (whose ``open`` waits for a writer), a device or a
    socket is refused at once instead of hanging or being read without end."""
    source = Path(path)
    try:
        mode = os.stat(source).st_mode
    except OSError as exc:
        if exc.errno in (errno.ENOENT, errno.ENOTDIR):
            raise FileError(f"{what} file '{source}' does not exist") from None
        raise FileError(f"{what} file '{source}': {_why(exc)}") from None
    if stat.S_ISDIR(mode):
        raise FileError(f"{what} file '{source}' is a directory")
    if not stat.S_ISREG(mode):
        raise FileError(f"{what} file '{source}' is not a regular file (a FIFO, device or socket)")
    if not os.access(source, os.R_OK):
        raise FileError(f"{what} file '{source}': permission denied")
    return source


def read_text(path: PathLike, what: str = "input", limit: int = 16 * 2**20) -> str:
    """A UTF-8 text file of at most ``limit`` bytes."""
    source = check_input(path, what)
    if source.stat().st_size > limit:
        raise FileError(f"{what} file '{source}' is larger than {limit // 2**20} MiB")
    try:
        return source.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise FileError(f"{what} file '{source}' is not UTF-8 text (byte {exc.start})") from None
    except OSError as exc:
        raise FileError(f"{what} file '{source}': {_why(exc)}") from None


def read_npy(
    path: PathLike, max_bytes: int | None = None, what: str = "input", mmap: bool = False
) -> np.ndarray[Any, Any]:
    """A numeric ``.npy`` array, its header checked before anything is allocated: the data
    must fit in the file (a 1 KB file cannot hold 2.5 TB) and in ``max_bytes``; strings,
    objects and complex numbers are refused. With ``mmap`` the array is memory-mapped
    read-only: rows are read from disk when used, so it may be larger than RAM."""
    source = check_input(path, what)
    try:
        with open(source, "rb") as f:
            version = np.lib.format.read_magic(f)
            readers = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}
            if version not in readers:
                raise ValueError(f"unsupported .npy format version {version[0]}.{version[1]}")
            shape, _, dtype = readers[version](f, max_header_size=10_000)
            offset = f.tell()
    except (ValueError, OSError, SyntaxError) as exc:
        raise FileError(f"{what} file '{source}' is not a .npy array file: {exc}") from None
    if dtype.kind not in NPY_DTYPES:
        raise FileError(f"{what} file '{source}' holds {dtype} values; a model takes numbers (bool, int or float)")
    size = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize if shape else dtype.itemsize
    available = source.stat().st_size - offset
    if size > available:
        raise FileError(
            f"{what} file '{source}' is truncated: its header claims {size_text(size)} of data, the file holds "
            f"{size_text(available)}"
        )
    if max_bytes is not None and size > max_bytes and not mmap:
        raise FileError(
            f"{what} file '{source}' holds {size_text(size)}, more than the {size_text(max_bytes)} available"
        )
    try:
        array: np.ndarray[Any, Any] = np.load(source, allow_pickle=False, mmap_mode="r" if mmap else None)
        return array
    except (ValueError, OSError) as exc:
        raise FileError(f"{what} file '{source}' is not a .npy array file: {exc}") from None


def size_text(n: int) -> str:
    """A byte count for messages: ``2.3 TiB``, ``1,024.0 GiB``, ``1000 bytes``."""
    for unit, size in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= size:
            return f"{n / size:,.1f} {unit}"
    return f"{n} bytes"
