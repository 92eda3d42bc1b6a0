"""Petrel as a service: an HTTP API and an Arrow Flight SQL endpoint over the session API.

:class:`~engine.service.core.Service` holds tenants (tokens that map to one
namespace), their sessions and their limits; :mod:`engine.service.http` and
:mod:`engine.service.flight` are the two protocols over it;
:mod:`engine.service.server` runs them (``petrel serve``).
"""

from __future__ import annotations

from engine.service.core import Service, ServiceConfig
from engine.service.tenants import Limits, Tenant, TokenStore

__all__ = ["Limits", "Service", "ServiceConfig", "Tenant", "TokenStore"]
