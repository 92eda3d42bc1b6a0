"""Streaming sources: events pulled from a broker into a table, exactly once.

``source`` is the interface a broker client implements (messages with a
sequence number per lane, positioned at a sequence, acknowledged through
one); ``nats`` is the NATS JetStream source; ``consumer`` is the Ray actor
that reads one lane, stores its events through the ingest owners with the
lane's sequence committed in the same commits, and only then acknowledges
the broker; ``handle`` starts the consumers and reports status and lag.
"""
