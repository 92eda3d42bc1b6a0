"""Object-store access for a warehouse root, over fsspec.

An :class:`ObjectStore` is a small, picklable handle on one warehouse root
(``file://``, ``memory://`` or ``s3://``).  Every path it takes is relative to
that root.  It offers the few operations the rest of Petrel needs, and one
atomic primitive, :meth:`ObjectStore.put_if_absent`, on which every commit
rests: the object appears whole or not at all, and a second writer of the
same path gets :class:`~storage.errors.CommitConflict`.

Every read, listing, plain write and delete is retried with backoff when
the store fails transiently (:mod:`storage.transient`), so an absence it
reports is an answer of the store, never a 500 or a timeout in disguise;
after the last attempt it raises :class:`~storage.errors.StoreUnavailable`.
A conditional put is retried too: when the failed attempt did land (a lost
reply), the retry is refused as CommitConflict, and the commit log, which
puts a unique record id in every commit, finds its own record and takes
the commit as done instead of writing it again.
"""

from __future__ import annotations

import collections
import os
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

import fsspec
import pyarrow.fs as pafs

from storage.errors import CommitConflict, PetrelError, UnsafeStore, WriteRace
from storage.transient import retrying

_MEMORY_LOCK = threading.Lock()
_CHECKED_STORES: set[tuple[str, str]] = set()  # (location, endpoint) whose conditional writes were verified
_CHECKED_LOCK = threading.Lock()
_CHECK_FOLDER = ".petrel-conditional-write-check"  # not a valid namespace name: never listed as one


@dataclass(frozen=True)
class ObjectInfo:
    """One object under the root: its relative path, size and modification time."""

    path: str
    size: int
    mtime: float


def _split_url(url: str) -> tuple[str, str]:
    """Return (protocol, root path without protocol) for a warehouse URL or local path."""
    parsed = urlparse(url)
    if parsed.scheme in ("", "file") or (len(parsed.scheme) == 1 and os.name == "nt"):
        local = url
        if parsed.scheme == "file":  # the path as written ('#' and '?' belong to it), without file:// or file:
            local = url[len("file:"):]
            local = local[2:] if local.startswith("//") else local
        return "file", os.path.abspath(os.path.expanduser(local))
    if parsed.scheme == "memory":
        return "memory", "/" + (parsed.netloc + parsed.path).strip("/")
    if parsed.scheme in ("s3", "s3a"):
        if not parsed.netloc:
            raise PetrelError(f"warehouse URL {url!r} names no bucket; use s3://bucket/prefix")
        return "s3", (parsed.netloc + parsed.path).rstrip("/")
    raise PetrelError(
        f"warehouse URL {url!r} has scheme {parsed.scheme!r}, which Petrel does not support; "
        "use a local path, file://, memory:// or s3://"
    )


class ObjectStore:
    """A picklable handle on one warehouse root."""

    def __init__(self, url: str, storage_options: dict[str, Any] | None = None) -> None:
        self.url = url
        self.storage_options = dict(storage_options or {})
        self.protocol, self.root = _split_url(url)
        self.calls: collections.Counter[str] = collections.Counter()
        self._fs: fsspec.AbstractFileSystem | None = None

    @property
    def location(self) -> str:
        """The root as one canonical URL: the same for every spelling of one warehouse.

        A local root is absolute with symlinks resolved (``./wh`` and
        ``/home/me/wh`` are one location), so names derived from it, like
        the ingest owners', agree between processes.
        """
        if self.protocol == "file":
            return "file://" + os.path.realpath(self.root)
        return f"{self.protocol}://{self.root.lstrip('/')}"

    # -- pickling: the filesystem object is rebuilt on the other side --------
    def __getstate__(self) -> dict[str, Any]:
        # the canonical URL, not the one given: a relative path would be resolved
        # again in the receiving process's working directory
        return {"url": self.location, "storage_options": self.storage_options}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["url"], state["storage_options"])

    def __repr__(self) -> str:
        return f"ObjectStore({self.url!r})"

    @property
    def fs(self) -> fsspec.AbstractFileSystem:
        if self._fs is None:
            if self.protocol == "file":
                self._fs = fsspec.filesystem("file", auto_mkdir=True)
            elif self.protocol == "s3":
                # no listings cache: other processes add and remove objects all the time, and a
                # stale cached listing makes s3fs report a new segment as missing
                self._fs = fsspec.filesystem("s3", **{"use_listings_cache": False, **self.storage_options})
            else:
                self._fs = fsspec.filesystem(self.protocol, **self.storage_options)
        return self._fs

    def full(self, path: str) -> str:
        """The backend path of a path relative to the root."""
        return f"{self.root}/{path}" if path else self.root

    def _relative(self, full: str) -> str:
        full = full.split("://", 1)[-1]
        root = self.root.lstrip("/") if self.protocol != "file" else self.root
        full_cmp = full.lstrip("/") if self.protocol != "file" else full
        if full_cmp.startswith(root):
            return full_cmp[len(root):].lstrip("/")
        return full_cmp

    # -- reads -----------------------------------------------------------------
    def get(self, path: str) -> bytes:
        """The whole object at ``path``; FileNotFoundError when it is absent."""
        self.calls["get"] += 1
        full = self.full(path)
        return retrying(lambda: self.fs.cat_file(full), f"reading {path}")

    def exists(self, path: str) -> bool:
        self.calls["head"] += 1
        full = self.full(path)
        return retrying(lambda: self.fs.exists(full), f"looking for {path}")

    def list(self, prefix: str, recursive: bool = False, include_temporary: bool = False) -> list[ObjectInfo]:
        """Objects directly under (or, with ``recursive``, anywhere below) ``prefix``.

        Temporary files of unfinished local writes (``.tmp-*``) are left out
        unless ``include_temporary`` (vacuum deletes those a crash left behind).
        """
        self.calls["list"] += 1
        full = self.full(prefix)

        def listing() -> list[dict[str, Any]]:
            try:
                if recursive:
                    return list(self.fs.find(full, detail=True, withdirs=False).values())
                self.fs.invalidate_cache(full)
                return [e for e in self.fs.ls(full, detail=True) if e.get("type") != "directory"]
            except FileNotFoundError:
                return []

        entries = retrying(listing, f"listing {prefix}")
        infos = []
        for entry in entries:
            name = entry["name"]
            if not include_temporary and os.path.basename(name).startswith(".tmp-"):
                continue
            infos.append(ObjectInfo(self._relative(name), int(entry.get("size") or 0), _mtime(entry)))
        return sorted(infos, key=lambda info: info.path)

    def list_dirs(self, prefix: str) -> list[str]:
        """Names of the immediate sub-folders of ``prefix``."""
        self.calls["list"] += 1
        full = self.full(prefix)

        def listing() -> list[dict[str, Any]]:
            try:
                self.fs.invalidate_cache(full)
                return self.fs.ls(full, detail=True)
            except FileNotFoundError:
                return []

        entries = retrying(listing, f"listing the folders of {prefix}")
        return sorted(os.path.basename(e["name"].rstrip("/")) for e in entries if e.get("type") == "directory")

    # -- writes ------------------------------------------------------------------
    def put_if_absent(self, path: str, data: bytes) -> None:
        """Create ``path`` with ``data`` atomically; CommitConflict if it exists."""
        self.calls["put_if_absent"] += 1
        full = self.full(path)
        if self.protocol == "file":
            self._local_put(full, data, exclusive=True)
        elif self.protocol == "memory":
            with _MEMORY_LOCK:
                if self.fs.exists(full):
                    raise CommitConflict(f"{path} already exists: another writer committed it first")
                self.fs.pipe_file(full, data)
        else:
            self._check_conditional_writes_once()
            # a retry after a put that landed but failed (a lost reply) is refused as CommitConflict:
            # the commit log then finds its own record id in the log and takes it as the success it was
            retrying(lambda: self._conditional_put(path, data), f"committing {path}")

    def _conditional_put(self, path: str, data: bytes) -> None:
        """A PUT with ``If-None-Match: *``, its refusals as CommitConflict (or WriteRace, retryable)."""
        try:
            with self.fs.open(self.full(path), "xb") as handle:
                handle.write(data)
        except FileExistsError as exc:
            raise CommitConflict(f"{path} already exists: another writer committed it first") from exc
        except OSError as exc:
            race = _failed_condition(exc)
            if race == "exists":  # some endpoints report the failed precondition as a plain error
                raise CommitConflict(f"{path} already exists: another writer committed it first") from exc
            if race == "race":
                raise WriteRace(
                    f"{path}: another conditional write of it was in flight (409 ConditionalRequestConflict); "
                    "maybe neither landed — reload and retry"
                ) from exc
            raise

    def check_conditional_writes(self) -> None:
        """Put one key twice and expect the second put refused; UnsafeStore if the store overwrote it.

        Every commit rests on ``If-None-Match: *``.  A store that ignores it
        (some S3-compatible servers, old gateways) would let two writers
        overwrite each other's commits silently, so Petrel refuses to run there.
        """
        probe = f"{_CHECK_FOLDER}/{uuid.uuid4().hex}"
        try:
            self._conditional_put(probe, b"first")
            try:
                self._conditional_put(probe, b"second")
            except CommitConflict:
                return
            raise UnsafeStore(
                f"the object store at {self.location} ignored If-None-Match: a second conditional put of {probe} "
                "overwrote the first, so concurrent commits would overwrite each other; use a store that supports "
                "conditional writes (AWS S3, MinIO, Ceph RGW and others do)"
            )
        finally:
            try:
                self.fs.rm_file(self.full(probe))
            except (FileNotFoundError, OSError):
                pass

    def _check_conditional_writes_once(self) -> None:
        key = (self.location, str(self.storage_options.get("endpoint_url")
                                  or (self.storage_options.get("client_kwargs") or {}).get("endpoint_url")))
        if key in _CHECKED_STORES:
            return
        with _CHECKED_LOCK:
            if key not in _CHECKED_STORES:
                self.check_conditional_writes()
                _CHECKED_STORES.add(key)

    def copy(self, source: str, target: str) -> None:
        """Write ``target`` as a new object with ``source``'s bytes (a fresh modification time).

        FileNotFoundError if ``source`` is gone.
        """
        self.calls["put"] += 1
        if self.protocol == "file":
            self._local_put(self.full(target), self.get(source), exclusive=False)
        else:
            retrying(lambda: self.fs.copy(self.full(source), self.full(target)), f"copying {source}")

    def put(self, path: str, data: bytes) -> None:
        """Write ``path`` whole (readers never see a partial object); for unique names."""
        self.calls["put"] += 1
        full = self.full(path)
        if self.protocol == "file":
            self._local_put(full, data, exclusive=False)
        else:
            retrying(lambda: self.fs.pipe_file(full, data), f"writing {path}")

    def delete(self, path: str) -> None:
        """Remove one object (or a whole folder); absent ones are ignored."""
        self.calls["delete"] += 1
        full = self.full(path)

        def remove() -> None:
            try:
                if self.fs.isdir(full):
                    self.fs.rm(full, recursive=True)
                else:
                    self.fs.rm_file(full)
            except FileNotFoundError:
                pass

        retrying(remove, f"deleting {path}")

    def _local_put(self, full: str, data: bytes, exclusive: bool) -> None:
        directory = os.path.dirname(full)
        os.makedirs(directory, exist_ok=True)
        tmp = os.path.join(directory, f".tmp-{uuid.uuid4().hex}")
        try:
            with open(tmp, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            if exclusive:
                try:
                    os.link(tmp, full)
                except FileExistsError as exc:
                    raise CommitConflict(
                        f"{self._relative(full)} already exists: another writer committed it first"
                    ) from exc
            else:
                os.replace(tmp, full)
                tmp = None
            fsync_directory(directory)
        finally:
            if tmp is not None:
                try:
                    os.unlink(tmp)
                except FileNotFoundError:
                    pass

    # -- Arrow access -------------------------------------------------------------
    def arrow_filesystem(self) -> pafs.FileSystem:
        """A pyarrow filesystem over this root, for Parquet reads with pushdown."""
        if self.protocol == "file":
            return pafs.LocalFileSystem()
        return pafs.PyFileSystem(RetryingHandler(self.fs))

    def arrow_path(self, path: str) -> str:
        """The path of ``path`` as :meth:`arrow_filesystem` expects it."""
        return self.full(path)


def _failed_condition(exc: BaseException) -> str | None:
    """'exists' for a refused If-None-Match (412), 'race' for a conflicting one in flight (409), else None."""
    seen: BaseException | None = exc
    while seen is not None:
        response = getattr(seen, "response", None)
        if isinstance(response, dict):
            code = (response.get("Error") or {}).get("Code")
            status = (response.get("ResponseMetadata") or {}).get("HTTPStatusCode")
            if code == "PreconditionFailed" or status == 412:
                return "exists"
            if code == "ConditionalRequestConflict" or status == 409:
                return "race"
        text = str(seen)  # codes only: a bare 409 or 412 may be part of a path
        if "PreconditionFailed" in text or "Precondition Failed" in text:
            return "exists"
        if "ConditionalRequestConflict" in text:
            return "race"
        seen = seen.__cause__ or seen.__context__
    return None


def _mtime(entry: dict[str, Any]) -> float:
    for key in ("mtime", "LastModified", "created", "last_modified"):
        value = entry.get(key)
        if value is None:
            continue
        if hasattr(value, "timestamp"):
            return float(value.timestamp())
        return float(value)
    return time.time()


def fsync_directory(directory: str) -> None:
    """Make a rename or link in a local ``directory`` durable (best effort where it cannot be opened)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class RetryingHandler(pafs.FSSpecHandler):
    """pyarrow's fsspec handler, with its reads retried on transient failures and no false "not found".

    pyarrow's own handler asks ``fs.isfile()`` before opening a file, and
    fsspec answers False for any error, so an S3 500 or a timeout on that
    HEAD surfaces as ``FileNotFoundError`` for a file that is there.  This one
    opens the file directly (a real 404 is still ``FileNotFoundError``), and
    retries opening, looking up and reading (:func:`storage.transient.retrying`).
    """

    def get_file_info(self, paths: list[str]) -> list[pafs.FileInfo]:
        infos = []
        for path in paths:
            try:
                info = retrying(lambda: self.fs.info(path), f"looking up {path}")
            except FileNotFoundError:
                infos.append(pafs.FileInfo(path, pafs.FileType.NotFound))
            else:
                infos.append(self._create_file_info(path, info))
        return infos

    def open_input_stream(self, path: str) -> Any:
        return self.open_input_file(path)

    def open_input_file(self, path: str) -> Any:
        import pyarrow as pa

        handle = retrying(lambda: self.fs.open(path, mode="rb"), f"opening {path}")
        return pa.PythonFile(_RetryingReads(handle, path), mode="r")


class _RetryingReads:
    """A readable file whose reads are retried from where they started after a transient failure."""

    def __init__(self, handle: Any, path: str) -> None:
        self._handle = handle
        self._path = path

    def read(self, size: int = -1) -> bytes:
        start = self._handle.tell()

        def attempt() -> bytes:
            self._handle.seek(start)
            return self._handle.read(size)

        return retrying(attempt, f"reading {self._path}")

    def __getattr__(self, name: str) -> Any:
        return getattr(self._handle, name)
