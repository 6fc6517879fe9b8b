"""One writer per run directory: an advisory lock held while a run trains.

Two training processes on one run directory would both write checkpoints,
``metrics.csv`` and ``params.yaml``, and each one's start-up clean-up could
delete the other's half-written checkpoint. :class:`RunDirectoryLock` takes an
exclusive ``flock`` on ``<run>/train.lock`` and writes the holder's pid and
host into it, so a second trainer fails at once with a message that names the
holder. The operating system drops the lock when the holder exits, however it
exits (a crash or ``kill -9`` too), so an interrupted run never leaves a
stale lock behind.

    lock = RunDirectoryLock("runs/exp1")
    lock.acquire()   # raises RunDirectoryBusyError while another process holds it
    ...
    lock.release()

Where ``fcntl`` does not exist (Windows) the lock is a no-op.
"""

from __future__ import annotations

import os
import socket

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX
    fcntl = None

__all__ = ["LOCK_FILE", "RunDirectoryBusyError", "RunDirectoryLock"]

LOCK_FILE = "train.lock"


class RunDirectoryBusyError(RuntimeError):
    """Another process is training in the run directory."""


class RunDirectoryLock:
    """An exclusive, process-lifetime lock on a run directory.

    Args:
      run_dir: the run directory (created on :meth:`acquire` when missing).
    """

    def __init__(self, run_dir: str | os.PathLike):
        self.run_dir = os.fspath(run_dir)
        self.path = os.path.join(self.run_dir, LOCK_FILE)
        self._file = None

    def acquire(self) -> None:
        """Takes the lock (a no-op when this object holds it already).

        Raises:
          RunDirectoryBusyError: another process (or another lock object in
            this process) holds it; the message names its pid and host.
        """
        if self._file is not None or fcntl is None:
            return
        os.makedirs(self.run_dir, exist_ok=True)
        f = open(self.path, "a+", encoding="utf-8")
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            holder = f.read().strip() or "unknown process"
            f.close()
            raise RunDirectoryBusyError(
                f"{self.run_dir}: a training run already holds this run directory ({holder}, lock "
                f"{self.path}); stop it first, or train into another model_dir"
            ) from None
        f.seek(0)
        f.truncate()
        f.write(f"pid {os.getpid()} on {socket.gethostname()}\n")
        f.flush()
        self._file = f

    def release(self) -> None:
        """Drops the lock (a no-op when not held); the file stays."""
        if self._file is None:
            return
        fcntl.flock(self._file.fileno(), fcntl.LOCK_UN)
        self._file.close()
        self._file = None
