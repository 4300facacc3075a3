"""One writer per run folder: an OS-level lock that ``imde train`` and ``imde study`` hold for their whole run.

The lock is ``fcntl``/``LockFileEx`` through the ``filelock`` package, so the operating system releases it
when its process ends, killed or not: a crashed run never leaves a stale lock behind. Beside the lock file a
small ``.imde-writer.json`` names the holder (pid, host, command, start time) for the second writer's message.
Readers (``imde eval``, ``report``, ``claims``) take no lock; they never see half-written files because every
output is written atomically (:mod:`imde.utils.io`).
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from filelock import FileLock, Timeout

from imde.errors import RunFolderBusyError
from imde.utils.io import atomic_write_json

LOCK_NAME = ".imde.lock"
WRITER_NAME = ".imde-writer.json"


def _holder(run_dir: Path) -> str:
    try:
        info = json.loads((run_dir / WRITER_NAME).read_text(encoding="utf-8"))
        return f"process {info['pid']} on {info['host']} ({info['command']}, since {info['started']})"
    except (OSError, ValueError, KeyError, TypeError):
        return "another process"


@contextmanager
def exclusive_run_dir(run_dir: str | os.PathLike[str], command: str | None = None) -> Iterator[Path]:
    """Hold ``run_dir``'s writer lock inside the block (the folder is created if needed).

    Args:
        run_dir: the run folder.
        command: what holds it, for the message a second writer gets (default: this process's command line).

    Raises:
        RunFolderBusyError: at once (no waiting) when another process holds the lock, naming the folder and it.
    """
    folder = Path(run_dir)
    folder.mkdir(parents=True, exist_ok=True)
    lock = FileLock(folder / LOCK_NAME, timeout=0, thread_local=False, fallback_to_soft=False)
    try:
        lock.acquire()
    except Timeout:
        raise RunFolderBusyError(
            f"run folder {str(folder)!r} is being written by {_holder(folder)}; wait for it to finish, stop it, "
            "or choose another run_dir"
        ) from None
    try:
        atomic_write_json(folder / WRITER_NAME, {
            "pid": os.getpid(), "host": socket.gethostname(),
            "command": command or " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        })
        yield folder
    finally:
        (folder / WRITER_NAME).unlink(missing_ok=True)
        lock.release()
