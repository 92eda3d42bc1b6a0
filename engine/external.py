"""Tables from outside the warehouse: files read by table functions, and registered in-memory tables.

``read_parquet('path')``, ``read_csv('path', delim='|', header=true)`` and
``read_json('path')`` read a local path or any fsspec URL (``s3://...``
with the session's storage options) into Arrow when the query is planned;
``Session.register(name, table)`` makes a pyarrow Table or pandas
DataFrame queryable by name next to the warehouse's tables.
"""

from __future__ import annotations

from typing import Any

import fsspec
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.json as pajson
import pyarrow.parquet as pq

from storage.errors import InvalidName, SqlError, TableNotFound


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


def read_file(function: str, path: str, options: dict, storage_options: dict | None = None) -> pa.Table:
    """The rows of the file(s) at ``path``, as the table function ``function`` reads them."""
    try:
        fs, _, paths = fsspec.get_fs_token_paths(path, storage_options=storage_options or {})
    except Exception as error:
        raise TableNotFound(f"{function}({path!r}): cannot open: {error}") from None
    if not paths:
        raise TableNotFound(f"{function}({path!r}) matched no files; check the path")
    tables = []
    for one in paths:
        try:
            with fs.open(one, "rb") as handle:
                if function == "read_parquet":
                    tables.append(pq.read_table(handle))
                elif function in ("read_csv", "read_csv_auto"):
                    delimiter = str(options.get("delim", options.get("sep", ","))).strip("'")
                    header = _truthy(options.get("header", "true"))
                    read = pacsv.ReadOptions(autogenerate_column_names=not header)
                    tables.append(pacsv.read_csv(handle, read_options=read,
                                                 parse_options=pacsv.ParseOptions(delimiter=delimiter)))
                else:
                    tables.append(pajson.read_json(handle))
        except FileNotFoundError:
            raise TableNotFound(f"{function}({path!r}): no such file; check the path") from None
        except pa.ArrowInvalid as error:
            raise SqlError(f"{function}({path!r}) cannot read {one}: {error}") from None
    return pa.concat_tables(tables, promote_options="permissive") if len(tables) > 1 else tables[0]
