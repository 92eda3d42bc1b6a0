"""Maintenance beside ingestion and queries: compaction, retention and vacuum on Ray."""

from engine.maintenance.service import Maintenance

__all__ = ["Maintenance"]
