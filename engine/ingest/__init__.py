"""Ingestion: events in, sorted segments committed exactly once.

``parse`` and ``normalize`` turn client data into Arrow rows fitted to the
table (with per-row rejections), ``router`` assigns rows to partitions,
``actor`` owns a partition and group-commits its buffered rows, ``client``
fans a batch out and retries, ``files`` ingests files exactly once, and
``rejected`` keeps the rows that were refused.
"""
