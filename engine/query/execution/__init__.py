"""Executing plans on Arrow: segment scans, operators, two-phase aggregation. No Ray."""
