"""SQL types as Arrow types, and the coercions SQL applies between them.

The rules follow DuckDB's where it matters for results: integer and float
mix to DOUBLE, ``/`` always divides as DOUBLE, a string literal compared
with a timestamp is read as a timestamp, and a timestamp without a time
zone meets one with a zone as UTC (the session time zone).

DECIMAL follows DuckDB too: a literal such as ``1.50`` is DECIMAL(3,2);
decimals meet integers as decimals (an integer counts as DECIMAL(w,0),
w its width in digits: 10 for INTEGER, 19 for BIGINT) and floats as
DOUBLE; two decimals meet in the scale of the finer one with room for
the wider integer part, at most 38 digits.
"""

from __future__ import annotations

import pyarrow as pa
from sqlglot import exp

from storage.errors import UnsupportedSql

T = exp.DataType.Type

_SQL_TO_ARROW = {
    T.BOOLEAN: pa.bool_(),
    T.TINYINT: pa.int8(),
    T.SMALLINT: pa.int16(),
    T.INT: pa.int32(),
    T.BIGINT: pa.int64(),
    T.INT128: pa.int64(),
    T.UTINYINT: pa.uint8(),
    T.USMALLINT: pa.uint16(),
    T.UINT: pa.uint32(),
    T.UBIGINT: pa.uint64(),
    T.FLOAT: pa.float32(),
    T.DOUBLE: pa.float64(),
    T.VARCHAR: pa.string(),
    T.CHAR: pa.string(),
    T.NVARCHAR: pa.string(),
    T.NCHAR: pa.string(),
    T.TEXT: pa.string(),
    T.BINARY: pa.binary(),
    T.VARBINARY: pa.binary(),
    T.BLOB: pa.binary(),
    T.DATE: pa.date32(),
    T.DATETIME: pa.timestamp("us"),
    T.TIMESTAMP: pa.timestamp("us"),
    T.TIMESTAMPNTZ: pa.timestamp("us"),
    T.TIMESTAMPTZ: pa.timestamp("us", tz="UTC"),
    T.TIMESTAMPLTZ: pa.timestamp("us", tz="UTC"),
    T.TIMESTAMP_S: pa.timestamp("s"),
    T.TIMESTAMP_MS: pa.timestamp("ms"),
    T.TIMESTAMP_NS: pa.timestamp("ns"),
    T.TIME: pa.time64("us"),
    T.INTERVAL: pa.duration("us"),
}


def arrow_type(node: exp.DataType) -> pa.DataType:
    """The Arrow type of a SQL type name (``CAST(x AS <type>)``)."""
    kind = node.this
    if kind in (T.DECIMAL, T.BIGDECIMAL):
        params = [int(p.this.this) if isinstance(p.this, exp.Literal) else int(p.name) for p in node.expressions]
        precision, scale = (params + [18, 3])[:2] if params else (18, 3)
        if len(params) == 1:
            scale = 0
        return pa.decimal128(precision, scale)
    if kind in _SQL_TO_ARROW:
        return _SQL_TO_ARROW[kind]
    raise UnsupportedSql(f"the type {node.sql()} is not supported; use a number, string, boolean, date or timestamp type")


def is_numeric(t: pa.DataType) -> bool:
    return pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t)


def is_string(t: pa.DataType) -> bool:
    return pa.types.is_string(t) or pa.types.is_large_string(t)


def is_temporal(t: pa.DataType) -> bool:
    return pa.types.is_timestamp(t) or pa.types.is_date(t)


#: digits of each integer width, the precision it has as a DECIMAL (DuckDB's rule)
_INTEGER_DIGITS = {8: 3, 16: 5, 32: 10, 64: 19}
MAX_DECIMAL_DIGITS = 38


def as_decimal(t: pa.DataType) -> pa.DataType:
    """The DECIMAL an integer or decimal type meets other decimals as (INTEGER is DECIMAL(10,0))."""
    if pa.types.is_decimal(t):
        return t
    digits = _INTEGER_DIGITS[t.bit_width] + (1 if t.bit_width == 64 and pa.types.is_unsigned_integer(t) else 0)
    return pa.decimal128(digits, 0)


def decimal_common(a: pa.DataType, b: pa.DataType, extra: int = 0) -> pa.DataType:
    """The DECIMAL two exact numbers meet in: the larger scale, the larger integer part (+ ``extra`` digits)."""
    a, b = as_decimal(a), as_decimal(b)
    scale = max(a.scale, b.scale)
    precision = min(MAX_DECIMAL_DIGITS, max(a.precision - a.scale, b.precision - b.scale) + scale + extra)
    return pa.decimal128(max(precision, scale, 1), scale)


def decimal_meeting(a: pa.DataType, b: pa.DataType) -> pa.DataType:
    """The DECIMAL the values of two exact columns meet in as one column (UNION and friends).

    The larger integer part and the larger scale; past 38 digits the scale
    gives way, so the integer part always fits (DuckDB's rule: DECIMAL(38,1)
    meeting DECIMAL(18,3) is DECIMAL(38,1), and -0.25 becomes -0.3).
    """
    a, b = as_decimal(a), as_decimal(b)
    integer = max(a.precision - a.scale, b.precision - b.scale)
    scale = min(max(a.scale, b.scale), max(MAX_DECIMAL_DIGITS - integer, 0))
    return pa.decimal128(max(integer + scale, 1), scale)


def decimal_comparing(a: pa.DataType, b: pa.DataType) -> pa.DataType:
    """The DECIMAL two exact numbers are compared in: both exactly, past 38 digits as a 256-bit decimal."""
    a, b = as_decimal(a), as_decimal(b)
    scale = max(a.scale, b.scale)
    digits = max(a.precision - a.scale, b.precision - b.scale) + scale
    if digits > MAX_DECIMAL_DIGITS:
        return pa.decimal256(min(digits, 76), scale)
    return pa.decimal128(max(digits, 1), scale)


def numeric_common(a: pa.DataType, b: pa.DataType) -> pa.DataType:
    """The type two numbers are computed in: int64 for integers, a DECIMAL for exact numbers, float64 otherwise."""
    if pa.types.is_null(a):
        return numeric_common(b, b) if not pa.types.is_null(b) else pa.int64()
    if pa.types.is_null(b):
        return numeric_common(a, a)
    if pa.types.is_integer(a) and pa.types.is_integer(b):
        if pa.types.is_unsigned_integer(a) and pa.types.is_unsigned_integer(b):
            return pa.uint64()
        return pa.int64()
    if (pa.types.is_decimal(a) or pa.types.is_decimal(b)) and not (pa.types.is_floating(a) or pa.types.is_floating(b)):
        return a if a.equals(b) else decimal_common(a, b)
    return pa.float64()


def common_type(a: pa.DataType, b: pa.DataType) -> pa.DataType | None:
    """The type both sides of a comparison or of CASE/COALESCE branches become."""
    if a.equals(b):
        return a
    if pa.types.is_null(a):
        return b
    if pa.types.is_null(b):
        return a
    if is_numeric(a) and is_numeric(b):
        return numeric_common(a, b)
    if is_string(a) and is_string(b):
        return pa.large_string() if pa.types.is_large_string(a) or pa.types.is_large_string(b) else pa.string()
    if is_temporal(a) and is_temporal(b):
        tz = (getattr(a, "tz", None)) or (getattr(b, "tz", None))
        if pa.types.is_date(a) and pa.types.is_date(b):
            return pa.date32()
        return pa.timestamp("us", tz=tz)
    if is_temporal(a) and is_string(b):
        return a if pa.types.is_timestamp(a) else pa.date32()
    if is_string(a) and is_temporal(b):
        return b if pa.types.is_timestamp(b) else pa.date32()
    if pa.types.is_boolean(a) and is_string(b):
        return a
    if is_string(a) and pa.types.is_boolean(b):
        return b
    if pa.types.is_duration(a) and pa.types.is_duration(b):
        return pa.duration("us")
    return None
