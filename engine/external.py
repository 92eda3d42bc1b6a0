"""Tables from outside the warehouse: files read by table functions, and registered in-memory tables.

``read_parquet('path')``, ``read_csv('path', delim='|', header=true)`` and
``read_json('path')`` read a local path or an fsspec URL into Arrow when the
query is planned, after the session's :class:`engine.file_access.FileAccess`
allowed it (under EXPLAIN only the file's schema is read);
``Session.register(name, table)`` makes a pyarrow Table or pandas
DataFrame queryable by name next to the warehouse's tables.
"""

from __future__ import annotations

import contextlib
import contextvars
import io
from typing import Any, Iterator

import fsspec
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.json as pajson
import pyarrow.parquet as pq

from storage.errors import InvalidName, PetrelError, SqlError, TableNotFound


def as_arrow(data: Any) -> pa.Table:
    """A pyarrow Table from a Table, RecordBatch or pandas DataFrame."""
    if isinstance(data, pa.Table):
        return data
    if isinstance(data, pa.RecordBatch):
        return pa.Table.from_batches([data])
    try:
        import pandas as pd
    except ImportError:  # pragma: no cover - pandas is optional
        pd = None
    if pd is not None and isinstance(data, pd.DataFrame):
        return pa.Table.from_pandas(data, preserve_index=False)
    raise InvalidName(f"cannot register a {type(data).__name__}; pass a pyarrow Table or a pandas DataFrame")


def _truthy(value: str) -> bool:
    return str(value).strip("'\"").lower() in ("true", "1", "yes")


SCHEMA_ONLY: contextvars.ContextVar[bool] = contextvars.ContextVar("petrel_schema_only", default=False)
SCHEMA_SAMPLE_BYTES = 1 << 20
_KINDS = {"read_parquet": "Parquet", "read_csv": "CSV", "read_csv_auto": "CSV"}


@contextlib.contextmanager
def schema_only() -> Iterator[None]:
    """Within this block table functions read only a file's schema (for EXPLAIN), never its rows."""
    token = SCHEMA_ONLY.set(True)
    try:
        yield
    finally:
        SCHEMA_ONLY.reset(token)


def read_file(function: str, path: str, options: dict, storage_options: dict | None = None) -> pa.Table:
    """The rows of the file(s) at ``path``, as the table function ``function`` reads them.

    No access check happens here: sessions call :meth:`FileAccess.resolve`
    first and then :func:`read_paths`.
    """
    try:
        fs, _, paths = fsspec.get_fs_token_paths(path, storage_options=storage_options or {})
    except Exception as error:
        raise TableNotFound(f"{function}({path!r}): cannot open it ({type(error).__name__}); check the URL") from None
    return read_paths(function, path, fs, paths, options)


def read_paths(function: str, path: str, fs: Any, paths: list[str], options: dict) -> pa.Table:
    """Read ``paths`` on ``fs``; errors name the file but never quote what is in it."""
    if not paths:
        raise TableNotFound(f"{function}({path!r}) matched no files; check the path")
    header_only = SCHEMA_ONLY.get()
    tables = []
    for one in paths:
        try:
            with fs.open(one, "rb") as handle:
                tables.append(_read_one(function, handle, options, header_only))
        except FileNotFoundError:
            raise TableNotFound(f"{function}({path!r}): no such file; check the path") from None
        except IsADirectoryError:
            raise TableNotFound(f"{function}({path!r}) is a folder; name the files (a glob such as '/dir/*.csv')") from None
        except (pa.ArrowException, UnicodeDecodeError):
            kind = _KINDS.get(function, "JSON lines")
            hint = " (check delim= and header=)" if kind == "CSV" else ""
            raise SqlError(f"{function}({path!r}): {one.rsplit('/', 1)[-1]!r} is not a readable {kind} file{hint}") from None
        except PetrelError:
            raise
        except Exception as error:  # network and permission failures: the kind of failure, not the payload
            raise TableNotFound(f"{function}({path!r}) could not be read ({type(error).__name__}); "
                                "check the URL and that it is reachable") from None
    if len(tables) == 1:
        return tables[0]
    return pa.concat_tables(tables, promote_options="permissive")


def _read_one(function: str, handle: Any, options: dict, header_only: bool) -> pa.Table:
    if function == "read_parquet":
        if header_only:
            return pq.read_schema(handle).empty_table()
        return pq.read_table(handle)
    if function in ("read_csv", "read_csv_auto"):
        delimiter = str(options.get("delim", options.get("sep", ","))).strip("'")
        header = _truthy(options.get("header", "true"))
        read = pacsv.ReadOptions(autogenerate_column_names=not header)
        parse = pacsv.ParseOptions(delimiter=delimiter)
        if header_only:
            return pacsv.open_csv(handle, read_options=read, parse_options=parse).schema.empty_table()
        return pacsv.read_csv(handle, read_options=read, parse_options=parse)
    if header_only:  # the first complete lines are enough to infer the columns
        sample = handle.read(SCHEMA_SAMPLE_BYTES)
        if len(sample) == SCHEMA_SAMPLE_BYTES and b"\n" in sample:
            sample = sample[: sample.rindex(b"\n") + 1]
        return pajson.read_json(io.BytesIO(sample)).schema.empty_table()
    return pajson.read_json(handle)
