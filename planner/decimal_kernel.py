"""The remainder of two DECIMALs too wide for Arrow's kernels, as an Arrow function workers can call.

``a % b`` is ``a - trunc(a / b) * b``; Arrow's decimal division of two
38-digit decimals needs a 77-digit result, one more than a 256-bit decimal
holds, where DuckDB answers.  Every DECIMAL(38, s) value fits exactly in a
DECIMAL(76, 38), so this kernel takes both sides in that type and computes
the remainder with Python's exact decimals (its sign follows the dividend,
as SQL's does).  Compiled expressions only call it when Arrow's own kernels
cannot hold the intermediate.
"""

from __future__ import annotations

import decimal
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

REMAINDER_FUNCTION = "petrel_decimal_remainder"
WIDE = pa.decimal256(76, 38)
_CONTEXT = decimal.Context(prec=100)


def _remainder_kernel(ctx: Any, left: pa.Array, right: pa.Array) -> pa.Array:
    if isinstance(left, pa.Scalar) and isinstance(right, pa.Scalar):
        left = pa.array([left.as_py()], WIDE)
    length = len(left) if not isinstance(left, pa.Scalar) else len(right)
    lefts = [left.as_py()] * length if isinstance(left, pa.Scalar) else left.to_pylist()
    rights = [right.as_py()] * length if isinstance(right, pa.Scalar) else right.to_pylist()
    out = []
    for a, b in zip(lefts, rights):
        if a is None or b is None:
            out.append(None)
            continue
        if b == 0:
            raise pa.ArrowInvalid("Divide by zero")
        out.append(_CONTEXT.remainder(a, b))  # the sign of the dividend
    return pa.array(out, WIDE)


def register_kernels() -> None:
    """Register the remainder kernel with Arrow (once per process)."""
    try:
        pc.get_function(REMAINDER_FUNCTION)
        return
    except pa.ArrowKeyError:
        pass
    try:
        pc.register_scalar_function(
            _remainder_kernel,
            REMAINDER_FUNCTION,
            {"summary": "exact decimal remainder", "description": "a % b of two DECIMAL(76, 38) values."},
            {"left": WIDE, "right": WIDE},
            WIDE,
        )
    except pa.ArrowKeyError:  # another thread registered it first
        pass
