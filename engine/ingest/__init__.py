"""Ingestion: events in, sorted segments committed exactly once.

``parse`` reads client data into Arrow (``timestamps`` reads event times),
``normalize`` fits it to the table with per-row rejections (``schema_log``
keeps the schema all partitions agree on), ``router`` assigns rows to
partitions, ``handoff`` carries them to their owner, ``actor`` owns a
partition and group-commits its buffer, ``client`` fans a batch out to the
owners and retries, ``files`` ingests files exactly once, and ``rejected``
keeps the rows that were refused.
"""
