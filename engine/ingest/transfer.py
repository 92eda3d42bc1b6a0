"""How an append's rows travel from client to owner: Arrow IPC, through Ray or through shared memory.

Through Ray, the rows are one Arrow IPC buffer that Ray's object store
carries as it is.  But every object a call puts there costs about 4 ms of
CPU on 2 cores (create, seal, fetch, release: the caller, the raylet and
the actor each take their part), on top of the call itself: at 1-2 appends
per call that is as much CPU as encoding the rows into Parquet.  So to an
owner on the same machine the rows go as a file in shared memory instead:
the client writes the IPC stream into a file of its session's folder under
``/dev/shm`` and the call carries only its path (:class:`SharedRows`); the
owner maps the file and reads the rows from it without a copy.  On 2 cores,
two owners fed by 16 client threads took 15% less CPU for the same rows and
ingested 14-18% more per second (medians of interleaved runs).

A file is the client's: it stays until the call that carries it is over
(whatever its outcome, so retries can send it again) and then is removed;
the session's folder goes when the session closes, and the folder of a
client process that died is removed by the next session that starts on the
machine.  An owner that cannot read the file (it runs on another machine,
or in a container with its own ``/dev/shm``) refuses the append with
:class:`~storage.errors.SharedRowsMissing` before buffering anything, and
the client sends those rows through Ray from then on.
"""

from __future__ import annotations

import os
import shutil
import threading
import uuid
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.ipc as ipc

from storage.errors import SharedRowsMissing

SHARED_ROOT = "/dev/shm"
SHARED_MIN_BYTES = 64 << 10  # below this Ray carries the rows inside the call: no object to save
_FOLDER_PREFIX = "petrel-ingest-"


@dataclass(frozen=True)
class SharedRows:
    """Rows handed over as an Arrow IPC file in shared memory; ``len`` is its size, as for a buffer."""

    path: str
    size: int

    def __len__(self) -> int:
        return self.size


def pack(table: pa.Table) -> pa.Buffer:
    """``table`` as Arrow IPC bytes (only the rows of a slice, not its parent's buffers)."""
    sink = pa.BufferOutputStream()
    with ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue()


def unpack(data: pa.Buffer | bytes | SharedRows) -> pa.Table:
    """The rows of an append, however they travelled; a shared file is mapped, not copied."""
    if not isinstance(data, SharedRows):
        return ipc.open_stream(data).read_all()
    try:
        with pa.memory_map(data.path) as source:  # the rows keep the mapping alive after the close
            return ipc.open_stream(source).read_all()
    except OSError as exc:
        raise SharedRowsMissing(
            f"the rows handed over in {data.path} cannot be read here ({type(exc).__name__}: {exc}): this owner "
            "runs on another machine or the sender removed the file; send them through Ray instead"
        ) from None


def discard(data: pa.Buffer | bytes | SharedRows | None) -> None:
    """Remove a shared file once the call carrying it is over (a buffer needs nothing)."""
    if isinstance(data, SharedRows):
        try:
            os.unlink(data.path)
        except FileNotFoundError:
            pass


class SharedArea:
    """A session's folder in shared memory, for rows on their way to owners on this machine.

    Made on the first write; :meth:`write` returns None where there is no
    usable shared memory (no ``root``, full, not writable): the caller packs
    the rows for Ray instead.
    """

    def __init__(self, root: str = SHARED_ROOT) -> None:
        self.root = root
        self.folder: str | None = None
        self.usable = os.path.isdir(root) and os.access(root, os.W_OK)
        self.written = 0  # files written, for tests and status
        self._lock = threading.Lock()

    def write(self, table: pa.Table) -> SharedRows | None:
        """``table`` as an Arrow IPC file of this session's folder, or None if shared memory is unusable."""
        folder = self._folder()
        if folder is None:
            return None
        path = os.path.join(folder, uuid.uuid4().hex)
        try:
            with pa.OSFile(path, "wb") as sink:
                with ipc.new_stream(sink, table.schema) as writer:
                    writer.write_table(table)
                size = sink.tell()
        except OSError:  # full (ENOSPC) or gone: this batch travels through Ray
            discard(SharedRows(path, 0))
            return None
        self.written += 1
        return SharedRows(path, size)

    def close(self) -> None:
        """Remove the session's folder and every file left in it."""
        with self._lock:
            folder, self.folder = self.folder, None
        if folder is not None:
            shutil.rmtree(folder, ignore_errors=True)

    def _folder(self) -> str | None:
        if self.folder is not None or not self.usable:
            return self.folder
        with self._lock:
            if self.folder is None and self.usable:
                sweep(self.root)
                folder = os.path.join(self.root, f"{_FOLDER_PREFIX}{os.getpid()}-{uuid.uuid4().hex[:12]}")
                try:
                    os.mkdir(folder, 0o700)
                except OSError:
                    self.usable = False
                    return None
                self.folder = folder
        return self.folder


def sweep(root: str) -> list[str]:
    """Remove the folders under ``root`` of client processes that are gone; returns what it removed."""
    removed = []
    try:
        names = os.listdir(root)
    except OSError:
        return removed
    for name in names:
        if not name.startswith(_FOLDER_PREFIX):
            continue
        pid = name[len(_FOLDER_PREFIX):].split("-", 1)[0]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(os.path.join(root, name), ignore_errors=True)
            removed.append(name)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's: alive
        return True
    return True
