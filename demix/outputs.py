"""Run folders that are either finished or absent: locked, staged, committed manifest last.

A run claims its folder with a lock before any work, so a second ``demix`` writing to the same
folder fails at once with one line instead of interleaving with the first. Every output is first
written into a staging folder private to the run (a fresh ``.demix-staging-*`` folder inside the
run folder, created exclusively, mode 0700, so nothing planted there can redirect a write). Only
when all of them are written are they renamed into place, and the manifest goes last, so a folder
with a ``demix.json`` is a finished run. Before anything moves, every target is checked (inside
the folder, no symbolic link on the way, not a folder); the previous run's outputs are removed
only afterwards, and only the regular files that its parseable manifest lists inside the folder.
If anything fails (an error, Ctrl-C, SIGTERM), the staging folder is removed and a folder demix
created is removed again; existing files are touched only with ``--force``.
"""

from __future__ import annotations

import atexit
import contextlib
import errno
import fcntl
import hashlib
import json
import os
import re
import shutil
import signal
import stat
import tempfile
import unicodedata
import zipfile
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np

from demix.errors import DemixError, OutputError, ParameterError

MANIFEST = "demix.json"
STAGING_PREFIX = ".demix-staging-"
#: Longest file-name component most file systems take (bytes).
NAME_MAX = 255
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
#: errno values that say the machine, not the command line, is at fault (exit code 5).
ENVIRONMENT_ERRNOS = frozenset(
    {errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EPERM, errno.EROFS, errno.EIO, errno.EFBIG,
     errno.EMFILE, errno.ENFILE, errno.ENOMEM}
)  # fmt: skip


class MachineError(DemixError):
    """The machine refused: disk full, permission denied, read-only file system (exit code 5)."""

    exit_code = 5


def environment_error(path: object, exc: OSError) -> DemixError:
    """An :class:`OSError` while writing ``path`` as one line with the OS's reason.

    Disk full, permissions and the like are :class:`MachineError` (exit 5); anything else
    (a file where a folder should be, a name too long) an :class:`OutputError` (exit 2).
    """
    reason = exc.strerror or str(exc)
    cls = MachineError if exc.errno in ENVIRONMENT_ERRNOS else OutputError
    return cls(f"cannot write {path}: {reason}")


def safe_name(text: str, default: str = "input") -> str:
    """A file-system-safe ASCII name: accents folded (é → e), anything but letters, digits,
    ``.``, ``-`` and ``_`` to ``_``; ``default`` when nothing is left."""
    folded = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return _UNSAFE.sub("_", folded).strip("._")[:200] or default


def is_safe_label(label: object) -> bool:
    """Whether ``label`` can name a file as it is: letters, digits, ``_ . -``, no leading dot."""
    return isinstance(label, str) and bool(label) and label == safe_name(label, default="")


# ---------------------------------------------------------------------------------------------
# Checks before any work


def check_writable(path: Path, *, what: str = "output folder") -> None:
    """Refuse, before any work, an output path that cannot be created or written.

    Every name must fit the file system (255 bytes); the nearest existing ancestor must be a folder
    in which this process can create entries, which is probed by creating and removing a hidden
    folder (as root, permission bits say nothing: ``/proc`` or a read-only mount still refuse).
    """
    for part in path.parts:
        if len(os.fsencode(part)) > NAME_MAX:
            raise OutputError(f"{what} {path}: the name {part[:40]}… is longer than {NAME_MAX} bytes")
    existing = path
    while not os.path.lexists(existing) and existing != existing.parent:
        existing = existing.parent
    target = existing if existing.is_dir() else None
    if target is None:
        raise OutputError(f"{what} {path}: {existing.name} is a file, not a folder")
    try:
        with _signals_held():  # a SIGTERM between the two calls must not leave the probe behind
            probe = tempfile.mkdtemp(prefix=".demix-probe-", dir=target)
            os.rmdir(probe)
    except OSError as exc:
        raise environment_error(path, exc) from None


@contextlib.contextmanager
def _signals_held() -> Iterator[None]:
    """Hold SIGINT, SIGTERM and SIGHUP for a few system calls; they are delivered right after."""
    held = {signal.SIGINT, signal.SIGTERM, signal.SIGHUP}
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, held)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def check_file_target(path: Path, *, force: bool, option: str = "-o/--out") -> None:
    """Refuse, before any work, a single output file that cannot be written or would need ``force``.

    For ``bases learn -o`` and ``identify enroll -o``: an existing folder, a link to one, a parent
    that is a file, an unwritable place or (without ``force``) an existing file.
    """
    if path.is_dir():
        raise OutputError(f"{option} {path} is a folder; give a file name")
    if os.path.lexists(path) and not force:
        raise OutputError(f"{option} {path} already exists; use --force to replace it")
    check_writable(path.parent, what=f"{option} {path}: folder")
    if len(os.fsencode(path.name)) + 16 > NAME_MAX:
        raise OutputError(f"{option} {path}: the file name is longer than {NAME_MAX - 16} bytes")


def check_run_folder(folder: Path, *, force: bool, inputs: Iterable[Path]) -> None:
    """Refuse, before any work, a run folder that would replace results or inputs, or is busy.

    The folder must be writable and not being written by another demix (this process then holds
    its lock until the run is committed or fails). Without ``force`` it must be absent or empty;
    with it, an existing folder is reused, but never when an input file lies inside it.
    """
    if os.path.lexists(folder) and not folder.is_dir():
        raise OutputError(f"output {folder} exists and is not a folder")
    check_writable(folder)
    held = os.path.realpath(folder) in _CLAIMS
    claim(folder)
    try:
        _check_contents(folder, force=force, inputs=inputs)
    except BaseException:
        if not held:
            release(folder)
        raise


def _check_contents(folder: Path, *, force: bool, inputs: Iterable[Path]) -> None:
    if not folder.exists():
        return
    _sweep_staging(folder)
    if not any(folder.iterdir()):
        return
    if not force:
        raise OutputError(
            f"output folder {folder} already exists and is not empty; use --force to replace it"
        )
    root = folder.resolve()
    for item in inputs:
        if root in item.resolve().parents:
            raise OutputError(
                f"input {item} lies inside output folder {folder}; demix never writes over an input"
            )


# ---------------------------------------------------------------------------------------------
# The lock: one writer per folder, kept outside the folder so it needs no file inside it


@dataclass
class _Claim:
    fd: int
    path: Path


_CLAIMS: dict[str, _Claim] = {}


def lock_path(folder: Path) -> Path:
    """Where the lock of ``folder`` lives: a per-user folder in the temporary directory."""
    key = hashlib.sha256(os.fsencode(os.path.realpath(folder))).hexdigest()[:32]
    return _lock_dir() / f"{key}.lock"


def _lock_dir() -> Path:
    base = Path(tempfile.gettempdir()) / f"demix-{os.getuid()}-locks"
    with contextlib.suppress(FileExistsError):
        base.mkdir(mode=0o700)
    info = os.lstat(base)
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid():
        raise MachineError(f"lock folder {base} is not a folder of this user; remove it")
    return base


def claim(folder: Path) -> None:
    """Take ``folder``'s lock for this process (again: a no-op), or refuse with the holder's pid."""
    key = os.path.realpath(folder)
    if key in _CLAIMS:
        return
    path = lock_path(folder)
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise OutputError(
                f"output folder {folder} is being written by another demix run (pid {holder}); "
                "wait for it to finish or choose another -o"
            ) from None
        # The holder before us may have unlinked the file it locked: lock the file on disk.
        with contextlib.suppress(FileNotFoundError):
            if os.fstat(fd).st_ino == os.stat(path).st_ino:
                break
        os.close(fd)
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    _CLAIMS[key] = _Claim(fd, path)


def release(folder: Path) -> None:
    """Give ``folder``'s lock back (unlinked while still held, so no other run locks a ghost)."""
    held = _CLAIMS.pop(os.path.realpath(folder), None)
    if held is None:
        return
    with contextlib.suppress(OSError):
        os.unlink(held.path)
    os.close(held.fd)


@atexit.register
def release_all() -> None:
    """Give back every lock this process holds (a command's end, or the process's)."""
    for key in list(_CLAIMS):
        release(Path(key))


# ---------------------------------------------------------------------------------------------
# The run folder


class RunFolder:
    """Context manager that stages a run's files and commits them together, manifest last."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._staged: list[Path] = []  # names relative to the folder
        self._created: Path | None = None
        self._staging: Path | None = None

    def __enter__(self) -> RunFolder:
        try:
            self._created = make_folder(self.folder)
            claim(self.folder)
            self._staging = Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=self.folder))
        except OSError as exc:
            self._cleanup(failed=True)
            raise environment_error(self.folder, exc) from None
        except BaseException:
            self._cleanup(failed=True)
            raise
        return self

    def stage(self, name: str, writer: Callable[[Path], None]) -> Path:
        """Call ``writer(tmp)`` for the output ``name`` (a path relative to the folder)."""
        assert self._staging is not None, "stage() outside the with block"
        relative = _relative(name)
        tmp = self._staging / relative
        tmp.parent.mkdir(parents=True, exist_ok=True)
        self._staged.append(relative)
        try:
            writer(tmp)
        except OSError as exc:
            raise environment_error(self.folder / relative, exc) from None
        except RuntimeError as exc:
            # libsndfile reports a failed write(2) as its "system error" (code 2), errno lost
            if type(exc).__name__ != "LibsndfileError" or getattr(exc, "code", None) != 2:
                raise
            raise MachineError(f"cannot write {self.folder / relative}: {_refusal(self._staging)}") from None
        return self.folder / relative

    def commit(self, manifest: dict[str, Any]) -> None:
        """Put the staged outputs in place, write the manifest, then remove the previous run's
        outputs that this run did not replace.

        Every target is checked first, so a target that cannot be replaced (a folder, a path
        through a link) fails before any previous output is touched.
        """
        assert self._staging is not None, "commit() outside the with block"
        text = json.dumps(manifest, indent=2, allow_nan=False) + "\n"
        (self._staging / MANIFEST).write_text(text)
        targets = [*self._staged, Path(MANIFEST)]
        for relative in targets:
            _check_target(self.folder, relative)
        stale = [name for name in previous_outputs(self.folder) if name not in set(targets)]
        try:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.folder / MANIFEST)  # from here on the folder is not a finished run
            for relative in self._staged:
                (self.folder / relative).parent.mkdir(parents=True, exist_ok=True)
                os.replace(self._staging / relative, self.folder / relative)
            os.replace(self._staging / MANIFEST, self.folder / MANIFEST)
        except OSError as exc:
            raise environment_error(self.folder, exc) from None
        self._staged.clear()
        for relative in stale:
            with contextlib.suppress(OSError):
                os.unlink(self.folder / relative)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._cleanup(failed=exc_type is not None)

    def _cleanup(self, *, failed: bool) -> None:
        if self._staging is not None:
            shutil.rmtree(self._staging, ignore_errors=True)
            self._staging = None
        if failed and self._created is not None:
            shutil.rmtree(self._created, ignore_errors=True)
        release(self.folder)


def _refusal(folder: Path) -> str:
    """Why the system refused a write whose errno was lost: a full disk, or some other limit."""
    with contextlib.suppress(OSError):
        info = os.statvfs(folder)
        if info.f_bavail * info.f_frsize < 1 << 20:
            return os.strerror(errno.ENOSPC)
    return "the system refused the write (a full disk, a quota or a file-size limit)"


def _relative(name: str) -> Path:
    """An output name as a safe relative path: no absolute path, no ``..``, no empty part."""
    relative = Path(name)
    if relative.is_absolute() or not relative.parts or any(p in ("..", ".", "") for p in relative.parts):
        raise OutputError(f"output name {name!r} is not a plain relative file name")
    if any(len(os.fsencode(p)) > NAME_MAX for p in relative.parts):
        raise OutputError(f"output name {name[:40]!r}… is longer than {NAME_MAX} bytes")
    return relative


def _check_target(folder: Path, relative: Path) -> None:
    """Refuse a target that is a folder, or lies behind a link or a file inside the run folder."""
    current = folder
    for part in relative.parts[:-1]:
        current = current / part
        try:
            mode = os.lstat(current).st_mode
        except FileNotFoundError:
            return
        if not stat.S_ISDIR(mode):
            kind = "a symbolic link" if stat.S_ISLNK(mode) else "not a folder"
            raise OutputError(f"{current} is {kind}; demix writes its outputs only inside {folder}")
    final = folder / relative
    with contextlib.suppress(FileNotFoundError):
        if stat.S_ISDIR(os.lstat(final).st_mode):
            raise OutputError(f"{final} is a folder where demix writes a file; move it away")


def previous_outputs(folder: Path) -> list[Path]:
    """Files the previous run in ``folder`` provably wrote: what ``--force`` may remove.

    Only entries of a manifest that parses as demix's (``outputs`` a list of ``{"file": str}``),
    relative, without ``..``, reached without passing a link, and regular files (a link itself is
    left alone). A manifest that cannot be parsed lists nothing.
    """
    try:
        with open(folder / MANIFEST, "rb") as handle:
            if os.fstat(handle.fileno()).st_size > 16 << 20:
                return []
            old = json.loads(handle.read())
    except (OSError, ValueError):
        return []
    entries = old.get("outputs") if isinstance(old, dict) else None
    if not isinstance(entries, list):
        return []
    found = []
    for entry in entries:
        name = entry.get("file") if isinstance(entry, dict) else None
        if not isinstance(name, str):
            continue
        try:
            relative = _relative(name)
            _check_target(folder, relative)
            mode = os.lstat(folder / relative).st_mode
        except (DemixError, OSError):
            continue
        if stat.S_ISREG(mode):
            found.append(relative)
    return found


def _sweep_staging(folder: Path) -> None:
    """Remove staging folders a killed run left behind (the caller holds the folder's lock)."""
    with contextlib.suppress(OSError):
        for entry in os.scandir(folder):
            if entry.name.startswith(STAGING_PREFIX) and entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path, ignore_errors=True)


def make_folder(folder: Path) -> Path | None:
    """Create ``folder`` (and missing parents); return the topmost folder this call created."""
    missing = []
    current = folder
    while not os.path.lexists(current) and current != current.parent:
        missing.append(current)
        current = current.parent
    created = None
    for path in reversed(missing):
        try:
            os.mkdir(path)
        except FileExistsError:  # another process made it: not ours to remove
            continue
        created = created or path
    return created


def write_atomically(path: Path, writer: Callable[[Path], object]) -> None:
    """Write one file: ``writer(tmp)`` beside ``path`` into a fresh, exclusively created temporary
    name, then rename. On failure nothing is left, neither the temporary file nor the folders this
    call created. A link at ``path`` is replaced, never written through."""
    if path.is_dir():
        raise OutputError(f"{path} is a folder; give a file name")
    try:
        created = make_folder(path.parent)
        fd, name = tempfile.mkstemp(prefix=f".{path.name[:200]}.", suffix=".part", dir=path.parent)
    except OSError as exc:
        raise environment_error(path, exc) from None
    os.close(fd)
    tmp = Path(name)
    try:
        writer(tmp)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; a result file gets the usual mode
        os.replace(tmp, path)
    except BaseException as exc:
        if created is not None:
            shutil.rmtree(created, ignore_errors=True)
        if isinstance(exc, OSError):
            raise environment_error(path, exc) from None
        raise
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def _umask() -> int:
    """The process's umask (read by setting it, then restoring it)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_manifest(folder: Path, manifest: dict[str, Any]) -> None:
    """Replace ``folder``'s ``demix.json`` atomically (strict JSON: no NaN)."""
    text = json.dumps(manifest, indent=2, allow_nan=False) + "\n"
    write_atomically(folder / MANIFEST, lambda tmp: tmp.write_text(text))


# ---------------------------------------------------------------------------------------------
# npz files demix wrote and reads back (bases, identify models): checked from their headers


def read_npz(
    path: Path, expected: Mapping[str, int], *, what: str, kind: str = "npz file", max_bytes: int = 1 << 30
) -> dict[str, np.ndarray]:
    """Read the arrays ``expected`` (name → largest element count) of an npz, checked first.

    Each member's ``.npy`` header is read from the zip without loading anything: a member that is
    not a plain numeric (or unicode) array, an object array (a pickle), a shape above its limit or
    members whose sizes add up to more than ``max_bytes`` are refused before a byte of data is read.
    Members not in ``expected`` are never read. Every refusal is a :class:`ParameterError`
    ``"{what}: not a {kind} (reason)"``.
    """

    def refuse(reason: str) -> ParameterError:
        return ParameterError(f"{what}: not a {kind} ({reason})")

    if not path.exists():
        raise ParameterError(f"{what}: no such file")
    try:
        archive = zipfile.ZipFile(path)
    except IsADirectoryError:
        raise refuse("a folder") from None
    except (OSError, zipfile.BadZipFile, EOFError, ValueError):
        raise refuse("not a zip of .npy arrays") from None
    arrays: dict[str, np.ndarray] = {}
    with archive:
        total = 0
        for name, limit in expected.items():
            try:
                info = archive.getinfo(f"{name}.npy")
            except KeyError:
                raise refuse(f"the array {name!r} is missing") from None
            try:
                with archive.open(info) as member:
                    shape, dtype = _npy_header(member)
            except (ValueError, OSError, EOFError, zipfile.BadZipFile):
                raise refuse(f"the array {name!r} is damaged") from None
            if dtype.hasobject or dtype.kind not in "fiuU":
                raise refuse(f"the array {name!r} holds {dtype}, not numbers or text")
            count = int(np.prod(shape, dtype=np.float64))
            total += count * dtype.itemsize
            if count > limit or total > max_bytes:
                raise refuse(f"the array {name!r} claims shape {shape}, above the limit of {limit} values")
            if info.file_size < count * dtype.itemsize:
                raise refuse(f"the array {name!r} is shorter than its header says")
            try:
                with archive.open(info) as member:
                    arrays[name] = np.lib.format.read_array(member, allow_pickle=False)
            except (ValueError, OSError, EOFError, zipfile.BadZipFile):
                raise refuse(f"the array {name!r} is damaged") from None
    return arrays


def _npy_header(member: Any) -> tuple[tuple[int, ...], np.dtype[Any]]:
    """Shape and dtype from an ``.npy`` header (versions 1 and 2), reading nothing else."""
    version = np.lib.format.read_magic(member)
    if version == (1, 0):
        shape, _, dtype = np.lib.format.read_array_header_1_0(member)
    elif version == (2, 0):
        shape, _, dtype = np.lib.format.read_array_header_2_0(member)
    else:
        raise ValueError(f"npy format version {version}")
    return shape, dtype
