"""Petrel's runtime on Ray, and every way in: ``engine.connect(root)``."""

from engine.session import Session, connect

__all__ = ["Session", "connect"]
