"""Maintenance beside ingestion and queries: compaction, retention and vacuum on Ray."""

from engine.maintenance.retention import expired_rows, expired_rows_mask
from engine.maintenance.service import Maintenance

__all__ = ["Maintenance", "expired_rows", "expired_rows_mask"]
