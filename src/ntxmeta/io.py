"""Atomic file output: write to a temporary file beside the target, then rename.

A run killed at any point leaves either the old file or the new one, never
a half-written file that a later run would take as complete.

A kill (SIGKILL, power loss) can leave the temporary file itself behind:
``.{name}.{pid}.{random}.tmp`` (a name too long for the file system's
255-byte limit once so dressed is cut and given a digest: ``temp_prefix``). The next write of the same target removes
the temporary files of that target whose writing process no longer runs,
so a re-run after a kill leaves no litter beside the outputs it rewrites.
A process that learns it must stop before finishing a write (a worker whose
run was killed, ``ntxmeta.workflow``) removes its own temporary files first
(``abandon_writes``), so then not even that litter is left.
"""
from __future__ import annotations

import glob
import hashlib
import os
import tempfile
import threading
from contextlib import contextmanager
from pathlib import Path

#: Suffix of every temporary file (``.gitignore`` and the tests look for it).
TMP_SUFFIX = ".tmp"
#: Float format of every generated CSV: 10 significant digits, enough to
#: recompute any pooled number to 1e-8 and short enough to diff.
CSV_FLOAT = "%.10g"
#: Longest target name (UTF-8 bytes) kept whole in a temporary name: NAME_MAX
#: (255 bytes on ext4, XFS, APFS, NTFS) less the dot, a process id (up to
#: 10 digits), mkstemp's 8 random characters, the dots and TMP_SUFFIX.
TEMP_NAME_BYTES = 200


def temp_prefix(path: str | Path) -> str:
    """``.{name}.{pid}.``-style prefix of the temporary files of ``path``, without the pid.

    A target name longer than ``TEMP_NAME_BYTES`` is cut there (on a whole
    character) and followed by ``~`` and 12 hex digits of its SHA-256, so the
    temporary name stays within the file system's limit whenever the target's does.
    """
    name = Path(path).name
    raw = name.encode("utf-8")
    if len(raw) > TEMP_NAME_BYTES:
        cut = raw[:TEMP_NAME_BYTES - 13].decode("utf-8", "ignore")
        name = f"{cut}~{hashlib.sha256(raw).hexdigest()[:12]}"
    return f".{name}."


#: Called before every rename onto a target; raises to refuse the write.
#: A worker process sets it to "the run that started me is still alive"
#: (``ntxmeta.workflow``): a worker whose run was SIGKILLed never puts an
#: output in place, even one it was in the middle of writing.
_commit_guard = None


def set_commit_guard(guard) -> None:
    """Install ``guard()`` (raises to refuse) before each atomic rename of this process."""
    global _commit_guard
    _commit_guard = guard


#: Temporary files this process is writing now (``atomic_path`` adds and removes them).
_writing: set[str] = set()
_writing_lock = threading.Lock()


def abandon_writes() -> list[str]:
    """Delete the temporary files this process is writing; the ones deleted.

    For a process about to exit without finishing its writes (``os._exit``
    skips ``atomic_path``'s cleanup). Another thread of the process may
    still be writing one: its data goes to the unlinked file and is lost
    when the process exits. Only a thread that opens its temporary by name
    in the instant between the deletion and the exit can put it back.
    """
    with _writing_lock:
        paths = sorted(_writing)
    removed = []
    for tmp in paths:
        try:
            os.unlink(tmp)
        except FileNotFoundError:  # renamed into place or removed meanwhile
            continue
        removed.append(tmp)
    return removed


@contextmanager
def atomic_path(path: str | Path):
    """Yield a temporary path in the target's folder; rename it onto ``path`` on success.

    The temporary name carries the writer's process id, so that a later
    writer can tell a killed run's leftover (removed) from a file being
    written right now by another live process (kept).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(path)
    fd, tmp = tempfile.mkstemp(prefix=f"{temp_prefix(path)}{os.getpid()}.", suffix=TMP_SUFFIX,
                               dir=path.parent)
    os.close(fd)
    with _writing_lock:
        _writing.add(tmp)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; outputs are ordinary files
        if _commit_guard is not None:
            _commit_guard()
        os.replace(tmp, path)
    finally:
        with _writing_lock:
            _writing.discard(tmp)
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_text(path: str | Path, text: str) -> None:
    """Write text atomically (UTF-8, newline as given)."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8", newline="")


def write_bytes(path: str | Path, data: bytes) -> None:
    """Write bytes atomically (``write_text`` for text that is already encoded)."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def remove_stale_temps(path: str | Path) -> list[Path]:
    """Delete the temporary files of ``path`` left by processes that have ended.

    Returns the files removed. Temporary files of live processes (another
    thread of this process included) are kept. On Windows nothing is
    removed: there ``os.kill(pid, 0)`` would terminate the process.
    """
    if os.name == "nt":
        return []
    path = Path(path)
    prefix = temp_prefix(path)
    removed = []
    for cand in path.parent.glob(f"{glob.escape(prefix)}*{TMP_SUFFIX}"):
        pid = cand.name[len(prefix):-len(TMP_SUFFIX)].split(".", 1)[0]
        if pid.isdigit() and not _running(int(pid)):
            try:
                cand.unlink()
            except FileNotFoundError:  # another writer removed it first
                continue
            removed.append(cand)
    return removed


def _running(pid: int) -> bool:
    """Whether a process with this id exists (signal 0 checks without signalling)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by another user
        return True
    return True


def _umask() -> int:
    """The process umask (read by setting and restoring it)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask
