"""Ingestion: events in, sorted segments committed exactly once.

The client side (in the caller's process):

- ``client`` — a session's :class:`~engine.ingest.client.Ingestion` and a
  :class:`~engine.ingest.client.TableClient` per table: **fit** a batch
  (``parse`` reads it into Arrow, ``timestamps`` reads event times,
  ``normalize`` fits it to the table with per-row rejections,
  ``expired`` refuses rows past retention; ``storage.schema_log`` keeps the
  schema all partitions agree on), then **route** it (``router``);
- ``deliver`` — sends each partition's slice to its owner, many appends to
  one Ray call, and retries; ``transfer`` is how the rows travel (Arrow IPC,
  through Ray or through shared memory);
- ``files`` — files ingested exactly once, through the same path;
- ``rejected`` — the table that keeps refused rows.

The owner side (one per partition, on Ray):

- ``owner`` — :class:`~engine.ingest.owner.PartitionOwner`, a plain class:
  buffer, **flush** (``encode`` makes the segments) and **commit** segments,
  batch ids and source offsets together;
- ``actor`` — :class:`~engine.ingest.actor.IngestActor`, the owner on Ray;
- ``offsets`` — :class:`~engine.ingest.offsets.Offset`: whether a source's
  input is already committed (files, stream sequences).
"""
