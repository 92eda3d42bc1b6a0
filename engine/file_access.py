"""Which files a session may read from outside its warehouse tables.

Table functions (``read_parquet``, ``read_csv``, ``read_json``) and
``ingest_files`` read whatever URL the user writes, so every such read goes
through a :class:`FileAccess` first.  The setting has three forms:

- ``"off"``: nothing outside the warehouse tables is read;
- ``"local"``: files on this machine's disk (a library user's notebook);
- a list of prefixes (``["s3://dims/public/", "https://data.example.com/csv/"]``)
  or a mapping ``{prefix: storage_options}``: only URLs under one of them,
  each read with that prefix's own options (anonymous when none are given).

Whatever the setting, a read never reaches the warehouse root (that is how
one namespace would read another's segments), never follows a chained or
unknown fsspec protocol, never uses the warehouse's credentials, never
reaches a link-local address (cloud metadata endpoints) unless a prefix
names that address itself, and never follows an HTTP redirect.
"""

from __future__ import annotations

import ipaddress
import os
import posixpath
import socket
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlparse

import fsspec

from storage.errors import AccessDenied, LimitExceeded, TableNotFound
from storage.objectstore import ObjectStore

REMOTE_SCHEMES = {"s3": "s3", "s3a": "s3", "gs": "gcs", "gcs": "gcs", "abfs": "abfs", "az": "abfs",
                  "http": "http", "https": "https"}
GLOB_CHARS = ("*", "?", "[")
DEFAULT_MAX_BYTES = 1 << 30


@dataclass(frozen=True)
class Prefix:
    """One allow-listed location: a scheme, a host or bucket, and a path prefix."""

    scheme: str
    netloc: str
    path: str
    options: Mapping[str, Any] = field(default_factory=dict)

    def covers(self, scheme: str, netloc: str, path: str) -> bool:
        if scheme != self.scheme or netloc.lower() != self.netloc.lower():
            return False
        base = self.path.rstrip("/")
        return not base or path == base or path.startswith(base + "/")


@dataclass(frozen=True)
class Location:
    """A URL that passed the checks: the filesystem to read it with and the concrete paths."""

    fs: Any
    paths: list[str]
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def local(self) -> bool:
        return self.options.get("protocol") == "file"

    def urls(self) -> list[str]:
        """The paths as URLs another reader can open (local paths stay plain)."""
        if self.local:
            return list(self.paths)
        return [p if "://" in p else self.fs.unstrip_protocol(p) for p in self.paths]

    def storage_options(self) -> dict[str, Any]:
        return {k: v for k, v in self.options.items() if k != "protocol"}


def _split(url: str) -> tuple[str, str, str]:
    """(scheme, netloc, normalized path) of a URL or a local path; refuses chained and '..' URLs."""
    if "::" in url:
        raise AccessDenied(f"{url!r} chains filesystems ('::'); name one plain URL or path")
    parsed = urlparse(url)
    scheme = parsed.scheme.lower()
    if scheme in ("", "file") or len(scheme) == 1:
        local = url[len("file://"):] if url.startswith("file://") else url[len("file:"):] if scheme == "file" else url
        return "file", "", os.path.realpath(os.path.expanduser(local))
    if scheme not in REMOTE_SCHEMES:
        raise AccessDenied(f"{url!r} uses the scheme {scheme!r}, which table functions may not read; "
                           f"use one of {', '.join(sorted(set(REMOTE_SCHEMES)))} or a local path")
    raw = unquote(parsed.path)
    if ".." in raw.split("/"):
        raise AccessDenied(f"{url!r} contains '..'; name the file by its plain path")
    path = posixpath.normpath(raw) if raw not in ("", "/") else "/"
    return REMOTE_SCHEMES[scheme], parsed.netloc, path


def _link_local(host: str) -> bool:
    """Whether ``host`` is, or resolves to, a link-local address (169.254.0.0/16, fe80::/10)."""
    host = host.strip("[]")
    try:
        infos = socket.getaddrinfo(host, None)
    except OSError:
        return False  # unresolvable: the read itself fails, without reaching anything
    for info in infos:
        address = ipaddress.ip_address(info[4][0].split("%")[0])
        if address.is_link_local or (address.version == 6 and address.ipv4_mapped and address.ipv4_mapped.is_link_local):
            return True
    return False


class FileAccess:
    """The read permissions of one session: where table functions and ``ingest_files`` may go."""

    def __init__(self, setting: Any, store: ObjectStore, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self.setting = setting
        self.local = setting == "local"
        self.max_bytes = max_bytes
        self.prefixes: list[Prefix] = []
        if setting in ("off", "local", None, False):
            pass
        elif isinstance(setting, str):
            raise AccessDenied(f"table_functions={setting!r} is not a setting; use 'off', 'local' "
                               "or a list of allowed URL prefixes such as ['s3://bucket/dims/']")
        else:
            items = setting.items() if isinstance(setting, Mapping) else ((p, {}) for p in setting)
            for prefix, options in items:
                scheme, netloc, path = _split(str(prefix))
                self.prefixes.append(Prefix(scheme, netloc, path, dict(options or {})))
        if store.protocol == "memory":  # never readable by a table function: its scheme is refused
            self.warehouse = ("memory", "", store.root)
        else:
            self.warehouse = _split(store.location)

    @property
    def enabled(self) -> bool:
        return self.local or bool(self.prefixes)

    def describe(self) -> str:
        if self.local:
            return "local files"
        if self.prefixes:
            return "URLs under " + ", ".join(f"{p.scheme}://{p.netloc}{p.path}" if p.scheme != "file" else p.path
                                              for p in self.prefixes)
        return "nothing (table functions are off)"

    # -- checks ------------------------------------------------------------------------
    def _in_warehouse(self, scheme: str, netloc: str, path: str) -> bool:
        w_scheme, w_netloc, w_path = self.warehouse
        if scheme == "file" and w_scheme == "file":
            root = w_path
        elif scheme == w_scheme and netloc.lower() == w_netloc.lower():
            root = w_path
        else:
            return False
        root = root.rstrip("/")
        return path == root or path.startswith(root + "/") or not root

    def check(self, url: str) -> Prefix | None:
        """Refuse ``url`` unless this session may read it; the allow-list entry that covers it (None: local)."""
        if not self.enabled:
            raise AccessDenied(f"cannot read {url!r}: table functions and file reads are off for this session; "
                               "ask for an allow-listed prefix (connect(table_functions=[...]))")
        scheme, netloc, path = _split(url)
        if self._in_warehouse(scheme, netloc, path):
            raise AccessDenied(f"cannot read {url!r}: it is inside the warehouse; query its tables by name instead")
        covering = next((p for p in self.prefixes if p.covers(scheme, netloc, path)), None)
        if covering is None and not (self.local and scheme == "file"):
            raise AccessDenied(f"cannot read {url!r}: this session may read only {self.describe()}")
        if scheme in ("http", "https"):
            host = urlparse(url).hostname or ""
            named = covering is not None and (urlparse(f"http://{covering.netloc}").hostname or "") == host
            self._check_host(host, named)
        return covering

    def _check_host(self, host: str, named: bool) -> None:
        """Refuse a link-local host (cloud metadata) unless the allow-list names that address itself."""
        if _link_local(host) and not (named and _is_ip(host)):
            raise AccessDenied(f"cannot reach {host}: it is a link-local address; "
                               "allow-list it by its address if it is really meant to be read")

    def resolve(self, url: str) -> Location:
        """The filesystem and concrete paths of ``url`` (globs expanded), every one of them checked."""
        covering = self.check(str(url))
        scheme, _, _ = _split(str(url))
        if scheme == "file":
            target = str(url)[len("file://"):] if str(url).startswith("file://") else str(url)
            fs = fsspec.filesystem("file")
            target = os.path.expanduser(target)
            matches = fs.glob(target) if any(c in target for c in GLOB_CHARS) else [target]
            for match in matches:  # a symlink found by the glob is checked where it points
                self.check(os.path.realpath(match))
            return Location(fs, [os.path.realpath(m) for m in matches], {"protocol": "file"})
        options = dict(covering.options) if covering is not None else {}
        options.setdefault("skip_instance_cache", True)
        if scheme == "s3" and not ({"key", "secret", "profile", "anon", "token"} & options.keys()):
            options["anon"] = True  # never the credentials of the warehouse or of this machine
        if scheme in ("http", "https"):
            options.setdefault("allow_redirects", False)
            fs = fsspec.filesystem(scheme, **options)
            return Location(fs, [str(url)], options)
        fs, _, matches = fsspec.get_fs_token_paths(str(url), storage_options=options)
        for match in matches:
            self.check(fs.unstrip_protocol(match))
        return Location(fs, list(matches), options)

    def guard_size(self, location: Location, what: str) -> None:
        """Refuse to read more than ``max_bytes`` from ``location``."""
        total = 0
        for path in location.paths:
            try:
                total += int(location.fs.size(path) or 0)
            except FileNotFoundError:
                raise TableNotFound(f"{what}: no such file; check the path") from None
            except Exception:  # a size the server does not tell is checked while reading
                continue
        if total > self.max_bytes:
            raise LimitExceeded(f"{what} is {total} bytes, over this session's limit of {self.max_bytes} bytes "
                                "for files read by table functions; ingest it into a table instead")


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True
