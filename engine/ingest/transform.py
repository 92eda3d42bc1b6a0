"""A table's ingest transform applied to a parsed batch, before it is fitted and routed.

The transform itself (checked SQL, compiled per input schema, run with Arrow
kernels) is ``planner/transform.py``; here each parsed piece goes through it,
its surviving rows keep their input row numbers, and the rows it refuses join
the batch's rejections (kept in ``_rejected`` with the reason, like any other).
"""

from __future__ import annotations

from engine.ingest.parse import Parsed, Piece
from planner.transform import Transform


def apply_transform(transform: Transform, parsed: Parsed) -> Parsed:
    """``parsed`` with every piece transformed; rows the WHERE clause drops are gone, failures rejected."""
    rejected = dict(parsed.rejected)
    pieces = []
    for piece in parsed.pieces:
        applied = transform.apply(piece.table)
        for index, reason in applied.rejected.items():
            rejected[int(piece.rows[index])] = reason
        if applied.table.num_rows:
            pieces.append(Piece(applied.table, piece.rows[applied.rows], sizes_checked=False))
    return Parsed(pieces, rejected, parsed.total, parsed.raw)
