"""Petrel's durable state: object store, catalog, segments and commit logs. No Ray."""
