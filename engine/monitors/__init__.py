"""Monitors: saved queries with thresholds, evaluated on a slot grid, alerting at least once.

Layers, each in its own module:

- ``definition``: the validated spec and its JSON record (versioned in
  ``storage.monitor_log``);
- ``compile``: the query checked against the warehouse and turned into the
  SQL of one slot (alone, or shared with other monitors of the same shape);
- ``evaluate``: outcomes of (monitor, slot) pairs through one SQL seam
  (``queries``);
- ``state``: the per-group state machine, pure;
- ``history``: ``_monitor_transitions``, where each slot's state,
  transitions and outbox are committed together;
- ``notify``: delivery of the outbox, at least once, with dedup keys;
- ``service``: the scheduler, state processor and notifier actors;
- ``backtest`` and ``api`` (the session's methods), ``cli``.
"""
