"""Tenants: bearer tokens that map to one namespace each, with that tenant's limits.

A token is shown once, when it is created; the warehouse keeps only its
SHA-256 under ``_petrel.service/tokens/<hash>.json`` (tokens are 256 random bits,
so a fast hash is enough), written with ``put_if_absent`` like every other
object.  Revoking writes ``_petrel.service/revoked/<hash>.json`` beside it: nothing
is overwritten in place, and a revoked token stays revoked on every server
within :data:`CACHE_SECONDS`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import secrets
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from storage.catalog import validate_name
from storage.errors import PetrelError, Unauthorized
from storage.objectstore import ObjectStore

TOKEN_PREFIX = "ptl_"
FOLDER = "_petrel.service"  # a dot: never a valid namespace name, so no tenant can write here
CACHE_SECONDS = 2.0


@dataclass(frozen=True)
class Limits:
    """What one tenant may use: per query, per request, and at once."""

    query_timeout: float = 30.0
    max_result_rows: int = 1_000_000
    max_result_bytes: int = 256 << 20
    max_body_bytes: int = 64 << 20
    max_concurrent_queries: int = 4
    retry_after_seconds: int = 1
    max_query_memory: int = 1 << 30  # bytes of Arrow data one query may hold in any one process

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> Limits:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data or {}) - known
        if unknown:
            raise PetrelError(f"unknown tenant limit(s) {sorted(unknown)}; use {sorted(known)}")
        return cls(**(data or {}))


@dataclass(frozen=True)
class Tenant:
    """Who a token speaks for: its namespace, limits and table-function allow-list."""

    token_id: str
    namespace: str
    limits: Limits = Limits()
    table_functions: tuple[str, ...] = ()
    created: float = 0.0
    description: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"token_id": self.token_id, "namespace": self.namespace, "limits": dataclasses.asdict(self.limits),
                "table_functions": list(self.table_functions), "created": self.created,
                "description": self.description}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Tenant:
        return cls(data["token_id"], data["namespace"], Limits.from_json(data.get("limits")),
                   tuple(data.get("table_functions") or ()), data.get("created", 0.0), data.get("description", ""))


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass
class TokenStore:
    """Tokens of one warehouse: create, look up, list and revoke."""

    store: ObjectStore
    _cache: dict[str, tuple[Tenant | None, float]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def create(self, namespace: str, limits: Limits | None = None, table_functions: list[str] | None = None,
               description: str = "") -> tuple[str, Tenant]:
        """A new token for ``namespace``; returns (the token, shown only now, and its tenant)."""
        validate_name(namespace, "namespace")
        for prefix in table_functions or ():
            if prefix in ("local", "off"):
                raise PetrelError(f"a tenant's table functions are URL prefixes (s3://bucket/path/), not {prefix!r}")
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        digest = _hash(token)
        tenant = Tenant(digest[:12], namespace, limits or Limits(), tuple(table_functions or ()), time.time(),
                        description)
        self.store.put_if_absent(f"{FOLDER}/tokens/{digest}.json", json.dumps(tenant.to_json()).encode())
        return token, tenant

    def authenticate(self, token: str | None) -> Tenant:
        """The tenant of ``token``; raises :class:`Unauthorized` for a missing, unknown or revoked one."""
        if not token:
            raise Unauthorized("this request has no token; send 'Authorization: Bearer <token>' "
                               "(create one with `petrel tokens create --namespace NAME`)")
        digest = _hash(token)
        with self._lock:
            cached = self._cache.get(digest)
        if cached is not None and time.monotonic() - cached[1] < CACHE_SECONDS:
            tenant = cached[0]
        else:
            tenant = self._load(digest)
            with self._lock:
                self._cache[digest] = (tenant, time.monotonic())
        if tenant is None:
            raise Unauthorized("the token is unknown or revoked; ask for a new one")
        return tenant

    def cached(self, token: str | None) -> Tenant | None:
        """The tenant of ``token`` if it was looked up less than :data:`CACHE_SECONDS` ago (no I/O), else None."""
        if not token:
            return None
        with self._lock:
            cached = self._cache.get(_hash(token))
        if cached is None or time.monotonic() - cached[1] >= CACHE_SECONDS:
            return None
        return cached[0]

    def _load(self, digest: str) -> Tenant | None:
        if self.store.exists(f"{FOLDER}/revoked/{digest}.json"):
            return None
        try:
            return Tenant.from_json(json.loads(self.store.get(f"{FOLDER}/tokens/{digest}.json")))
        except FileNotFoundError:
            return None

    def list(self) -> list[tuple[Tenant, bool]]:
        """Every token's tenant and whether it is revoked (the tokens themselves are not kept)."""
        revoked = {info.path.rsplit("/", 1)[-1] for info in self.store.list(f"{FOLDER}/revoked")}
        found = []
        for info in self.store.list(f"{FOLDER}/tokens"):
            name = info.path.rsplit("/", 1)[-1]
            tenant = Tenant.from_json(json.loads(self.store.get(f"{FOLDER}/tokens/{name}")))
            found.append((tenant, name in revoked))
        return sorted(found, key=lambda item: item[0].created)

    def revoke(self, token_or_id: str) -> Tenant:
        """Revoke a token, given the token itself or its id (the first 12 characters of its hash)."""
        digest = _hash(token_or_id) if token_or_id.startswith(TOKEN_PREFIX) else None
        if digest is None:
            matches = [info.path.rsplit("/", 1)[-1][:-5] for info in self.store.list(f"{FOLDER}/tokens")
                       if info.path.rsplit("/", 1)[-1].startswith(token_or_id)]
            if len(matches) != 1 or len(token_or_id) < 8:
                raise PetrelError(f"no single token has the id {token_or_id!r}; see `petrel tokens list`")
            digest = matches[0]
        tenant = self._load(digest)
        if tenant is None:
            raise PetrelError(f"token {token_or_id[:16]!r} is unknown or already revoked")
        try:
            self.store.put_if_absent(f"{FOLDER}/revoked/{digest}.json", json.dumps({"revoked": time.time()}).encode())
        except PetrelError:
            pass  # revoked twice at once: revoked either way
        with self._lock:
            self._cache.pop(digest, None)
        return tenant
