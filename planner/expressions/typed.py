"""A compiled expression with its Arrow type (and its value, when it is a constant)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc


@dataclass(frozen=True)
class Typed:
    """A compiled expression, its Arrow type, and its value when it is a constant.

    ``literal`` marks a number written in the query: an integer literal
    meets a DECIMAL with the width DuckDB gives it (INTEGER when it fits),
    not the BIGINT it is computed in.
    """

    expr: pc.Expression
    type: pa.DataType
    value: pa.Scalar | None = None
    literal: bool = False

    @property
    def constant(self) -> bool:
        return self.value is not None


def constant(value: Any, type_: pa.DataType | None = None) -> Typed:
    """A constant of ``value`` (a Python value in ``type_``, or an Arrow scalar)."""
    scalar = value if isinstance(value, pa.Scalar) else pa.scalar(value, type_)
    return Typed(pc.scalar(scalar), scalar.type, scalar)
