"""Time units, defined once: their names and spellings, and their length.

Every place that reads a unit (INTERVAL literals, date_trunc, date_diff,
date_part, time_bucket widths) resolves its spelling here.  Units up to a
week have a fixed length in microseconds; months, quarters and years are
calendar units, counted in months.
"""

from __future__ import annotations

from storage.errors import UnsupportedSql

MICROSECOND = 1
MILLISECOND = 1_000
SECOND = 1_000_000
MINUTE = 60 * SECOND
HOUR = 60 * MINUTE
DAY = 24 * HOUR
WEEK = 7 * DAY

#: microseconds in each unit of fixed length
MICROS = {
    "microsecond": MICROSECOND, "millisecond": MILLISECOND, "second": SECOND, "minute": MINUTE,
    "hour": HOUR, "day": DAY, "week": WEEK,
}
#: months in each calendar unit
MONTHS = {"month": 1, "quarter": 3, "year": 12}

_SPELLINGS = {
    "microsecond": ("microsecond", "microseconds", "us", "usec", "usecs"),
    "millisecond": ("millisecond", "milliseconds", "ms", "msec", "msecs"),
    "second": ("second", "seconds", "s", "sec", "secs", "ss"),
    "minute": ("minute", "minutes", "m", "min", "mins", "mi"),
    "hour": ("hour", "hours", "h", "hr", "hrs", "hh"),
    "day": ("day", "days", "d", "dd"),
    "week": ("week", "weeks", "w", "wk"),
    "month": ("month", "months", "mon", "mons", "mm"),
    "quarter": ("quarter", "quarters", "qtr"),
    "year": ("year", "years", "y", "yy", "yyyy", "yr", "yrs"),
}
_BY_SPELLING = {spelling: unit for unit, spellings in _SPELLINGS.items() for spelling in spellings}


def find_unit(spelling: str) -> str | None:
    """The unit ``spelling`` names (``'hrs'`` -> ``'hour'``), or None."""
    return _BY_SPELLING.get(spelling.strip().lower())


def unit(spelling: str) -> str:
    """The unit ``spelling`` names; UnsupportedSql listing the units when it names none."""
    found = find_unit(spelling)
    if found is None:
        raise UnsupportedSql(f"time unit {spelling!r} is not supported; use year, quarter, month, week, day, hour, "
                             "minute, second, millisecond or microsecond")
    return found
