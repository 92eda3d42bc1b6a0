"""Event times: any reasonable spelling of an instant, as UTC microseconds.

Accepted: Arrow timestamps (naive ones are taken as UTC) and dates,
ISO-8601 text (with or without a zone; naive text is UTC), and epoch numbers
in seconds, milliseconds, microseconds or nanoseconds, told apart by
magnitude, for instants in the years 1 to 9999 (what Parquet readers,
Python and SQL engines all hold).  Every cast is checked: a value that
would overflow is refused, never wrapped.  Conversion is vectorised; a
value that fails is found by bisection and reported with its row, so one
bad timestamp rejects one row.
"""

from __future__ import annotations

import datetime as dt
import math
from typing import Any, Callable

import pyarrow as pa
import pyarrow.compute as pc

UTC_MICROS = pa.timestamp("us", tz="UTC")
EXPECTED = "a timestamp in the years 1-9999 (ISO-8601 text or epoch seconds/ms/us/ns)"
MIN_MICROS = -62_135_596_800_000_000  # 0001-01-01T00:00:00Z
MAX_MICROS = 253_402_300_799_999_999  # 9999-12-31T23:59:59.999999Z

# Epoch numbers below these magnitudes are seconds, milliseconds, microseconds;
# anything larger is nanoseconds.  1e11 s is the year 5138; 1e11 ms is 1973.
_SECONDS_BELOW = 1e11
_MILLIS_BELOW = 1e14
_MICROS_BELOW = 1e17
_LEAF = 16

_CONVERSION_ERRORS = (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError, OverflowError, ValueError)


def describe(value: Any, limit: int = 80) -> str:
    """A short printable form of a value for an error message."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def convert_with_rejects(
    array: pa.Array | pa.ChunkedArray,
    convert: Callable[[pa.Array], pa.Array],
    reason: Callable[[Any], str],
    convert_one: Callable[[Any], Any] | None = None,
    out_type: pa.DataType | None = None,
) -> tuple[pa.Array, dict[int, str]]:
    """``convert(array)``, with values it cannot convert nulled and reported by index.

    The whole array is converted at once; only when that fails is it halved,
    so k bad values cost about k*log(n) conversions of shrinking slices.
    """
    if isinstance(array, pa.ChunkedArray):
        try:
            return convert(array), {}
        except _CONVERSION_ERRORS:
            array = array.combine_chunks()
    bad: dict[int, str] = {}
    parts = _bisect(array, 0, convert, reason, convert_one, out_type, bad)
    result = parts[0] if len(parts) == 1 else pa.concat_arrays(parts)
    return result, bad


def _bisect(array, base, convert, reason, convert_one, out_type, bad) -> list[pa.Array]:
    try:
        out = convert(array)
        return [out.combine_chunks() if isinstance(out, pa.ChunkedArray) else out]
    except _CONVERSION_ERRORS:
        pass
    if len(array) > _LEAF:
        mid = len(array) // 2
        return _bisect(array.slice(0, mid), base, convert, reason, convert_one, out_type, bad) + _bisect(
            array.slice(mid), base + mid, convert, reason, convert_one, out_type, bad
        )
    values = []
    target = out_type
    for i in range(len(array)):
        one = array.slice(i, 1)
        try:
            values.append(convert(one)[0].as_py())
            continue
        except _CONVERSION_ERRORS:
            pass
        value = _value(one)
        if convert_one is not None:
            try:
                values.append(convert_one(value))
                continue
            except _CONVERSION_ERRORS:
                pass
        bad[base + i] = reason(value)
        values.append(None)
    if target is None:
        target = convert(pa.nulls(0, array.type)).type
    return [pa.array(values, type=target)]


def _value(one: pa.Array) -> Any:
    """The one value of ``one`` in Python, or its raw number when Python cannot hold it (year 20000)."""
    try:
        return one[0].as_py()
    except (OverflowError, ValueError, OSError):
        raw = pc.cast(one, pa.int64(), safe=False)[0].as_py()
        return f"{one.type} {raw}"


def to_utc_micros(column: pa.Array | pa.ChunkedArray, name: str) -> tuple[pa.Array | pa.ChunkedArray, dict[int, str]]:
    """``column`` as timestamp[us, UTC]; unconvertible values are nulled and reported.

    Nulls stay null: the caller decides what a missing time means.
    """
    t = column.type

    def reason(value: Any) -> str:
        return f"field {name!r}: value {describe(value)} is not a valid timestamp; expected {EXPECTED}"

    if pa.types.is_timestamp(t):
        return convert_with_rejects(column, _from_timestamp, reason, out_type=UTC_MICROS)
    if pa.types.is_date(t):
        return convert_with_rejects(column, lambda a: _from_timestamp(pc.cast(a, pa.timestamp("s"))), reason,
                                    out_type=UTC_MICROS)
    if pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t):
        return convert_with_rejects(column, _from_epoch, reason, _epoch_one, UTC_MICROS)
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return convert_with_rejects(column, _from_iso, reason, _iso_one, UTC_MICROS)
    if pa.types.is_null(t):
        return pa.nulls(len(column), UTC_MICROS), {}
    valid = pc.is_valid(column).to_numpy(zero_copy_only=False)
    bad = {
        i: f"field {name!r}: value {describe(column[i].as_py())} is of type {t}; expected {EXPECTED}"
        for i in valid.nonzero()[0].tolist()
    }
    return pa.nulls(len(column), UTC_MICROS), bad


def in_range(micros):
    """``micros`` (timestamp[us, UTC]) as it is, or ValueError when a value lies outside the years 1-9999."""
    if len(micros) and micros.null_count < len(micros):
        bounds = pc.min_max(pc.cast(micros, pa.int64()))
        if bounds["min"].as_py() < MIN_MICROS or bounds["max"].as_py() > MAX_MICROS:
            raise ValueError("outside the years 1-9999")
    return micros


def _from_timestamp(array):
    # from nanoseconds only digits below a microsecond are dropped (it cannot overflow); any
    # other unit is cast checked, so a time beyond what int64 microseconds hold is refused
    safe = array.type.unit != "ns"
    naive = pc.cast(array, pa.timestamp("us", tz=array.type.tz), safe=safe)
    return in_range(pc.cast(pc.cast(naive, pa.int64()), UTC_MICROS))


def _from_epoch(array):
    if pa.types.is_integer(array.type):
        values = pc.cast(array, pa.int64())
        magnitude = pc.abs(pc.cast(values, pa.float64()))
        micros = pc.if_else(
            pc.less(magnitude, _SECONDS_BELOW),
            pc.multiply_checked(values, 1_000_000),
            pc.if_else(
                pc.less(magnitude, _MILLIS_BELOW),
                pc.multiply_checked(values, 1000),
                pc.if_else(pc.less(magnitude, _MICROS_BELOW), values, pc.divide(values, 1000)),
            ),
        )
        return in_range(pc.cast(micros, UTC_MICROS))
    values = pc.cast(array, pa.float64())
    if pc.any(pc.invert(pc.is_finite(values))).as_py():
        raise ValueError("not a finite number")
    magnitude = pc.abs(values)
    scale = pc.if_else(
        pc.less(magnitude, _SECONDS_BELOW), 1e6,
        pc.if_else(pc.less(magnitude, _MILLIS_BELOW), 1e3, pc.if_else(pc.less(magnitude, _MICROS_BELOW), 1.0, 1e-3)),
    )
    micros = pc.floor(pc.multiply(values, scale))
    return in_range(pc.cast(pc.cast(micros, pa.int64()), UTC_MICROS))


def _epoch_one(value: Any) -> dt.datetime:
    number = float(value)
    if not math.isfinite(number):
        raise ValueError("not a finite number")
    magnitude = abs(number)
    if magnitude < _SECONDS_BELOW:
        micros = number * 1e6
    elif magnitude < _MILLIS_BELOW:
        micros = number * 1e3
    elif magnitude < _MICROS_BELOW:
        micros = number
    else:
        micros = number / 1e3
    return dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc) + dt.timedelta(microseconds=int(micros))


def _from_iso(array):
    try:
        return in_range(pc.cast(array, UTC_MICROS))
    except _CONVERSION_ERRORS:
        pass
    text = pc.utf8_trim_whitespace(array)
    text = pc.replace_substring_regex(text, r"^(\d{4}-\d{2}-\d{2})$", r"\1T00:00:00")
    text = pc.replace_substring_regex(text, r"(\.\d{6})\d+", r"\1")
    zoned = pc.match_substring_regex(text, r"(Z|[+-]\d\d(:?\d\d)?)$")
    text = pc.if_else(zoned, text, pc.binary_join_element_wise(text, "Z", ""))
    return in_range(pc.cast(text, UTC_MICROS))


def _iso_one(value: str) -> dt.datetime:
    text = value.strip()
    if not text:
        raise ValueError("empty")
    try:
        return _epoch_one(float(text))
    except ValueError:
        pass
    if text[-1] in "zZ":
        text = text[:-1] + "+00:00"
    parsed = dt.datetime.fromisoformat(text)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.timezone.utc)
    return parsed.astimezone(dt.timezone.utc)
