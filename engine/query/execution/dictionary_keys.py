"""String columns read as Parquet dictionaries under an aggregation, not one decoded string per row.

Segments store repetitive string columns (user agents, search phrases,
URLs, titles) dictionary-encoded.  Read as plain strings, every row costs
a copy of its string, a LIKE a match per row and a group-by a hash per row;
read as Arrow dictionaries, the scan copies small integers, a filter on the
column is evaluated once per distinct value and gathered by the indices,
and a group-by groups the indices.  Keys go back to plain strings right
after the aggregation, other columns right after the filter, so nothing
above sees a dictionary.
"""

from __future__ import annotations

import dataclasses

import pyarrow as pa
import pyarrow.acero as acero
import pyarrow.compute as pc
from sqlglot import exp

from planner.expressions import ExpressionCompiler
from planner.logical import Aggregate, Project, Scan

# what a filter on one dictionary column may contain to be evaluated on the dictionary's values
_PURE = (exp.Like, exp.ILike, exp.Not, exp.Paren, exp.Column, exp.Literal, exp.EQ, exp.NEQ, exp.In, exp.Or,
         exp.And, exp.Is, exp.Null, exp.Boolean, exp.Identifier)
_HIDDEN = "__petrel_dictionary_"


@dataclasses.dataclass(frozen=True)
class DictionaryRead:
    """How an aggregation's scan reads string columns as dictionaries.

    ``columns``: the stored columns to ask for as dictionaries; ``keys``:
    the group keys among the projection's outputs that stay dictionaries
    until the aggregation is done; ``late``: per stored column, the filter's
    conjuncts over it alone, evaluated on its dictionary after the read;
    ``pushed``: the rest of the filter, which the Parquet scanner evaluates.
    """

    columns: tuple[str, ...]
    keys: tuple[str, ...]
    late: dict[str, tuple[exp.Expression, ...]]
    pushed: exp.Expression | None
    distinct: tuple[str, ...] = ()  # outputs only a global aggregate's distinct values read: kept as dictionaries


def dictionary_read(plan: Aggregate) -> DictionaryRead | None:
    """The dictionary read of an aggregation straight over a scan, or None where no string column qualifies.

    A stored string column qualifies when the projection uses it only as a
    bare output, and every conjunct of the filter that mentions it mentions
    no other column and only comparisons and LIKEs against constants.
    """
    projection = plan.input
    if not isinstance(projection, Project) or not isinstance(projection.input, Scan) \
            or projection.compiled is None or projection.input.limit is not None:
        return None
    scan = projection.input
    if len(set(projection.names)) < len(projection.names):
        return None
    schema = scan.source.schema
    strings = {f.name for f in schema if f.type == pa.string()}
    bare: dict[str, list[str]] = {}
    for name, expr in zip(projection.names, projection.exprs):
        for column in expr.find_all(exp.Column):
            if column.name in strings:
                bare.setdefault(column.name, []).append(name if isinstance(expr, exp.Column) else "")
    usable = {c for c in strings if all(bare.get(c, []))}  # every projection use is a bare output (or none)
    conjuncts = list(scan.filter.flatten()) if isinstance(scan.filter, exp.And) else \
        ([scan.filter] if scan.filter is not None else [])
    late: dict[str, list[exp.Expression]] = {}
    pushed = []
    for conjunct in conjuncts:
        named = {c.name for c in conjunct.find_all(exp.Column)}
        if len(named) == 1 and next(iter(named)) in usable and all(isinstance(n, _PURE) for n in conjunct.walk()):
            late.setdefault(next(iter(named)), []).append(conjunct)
            continue
        usable -= named  # a conjunct over it and another column: the scanner needs it as strings
        pushed.append(conjunct)
    late = {c: parts for c, parts in late.items() if c in usable}
    pushed += [part for c, parts in late.items() if c not in usable for part in parts]
    arguments = {a.arg for a in plan.aggregates if a.arg is not None}
    keys = tuple(n for c in usable for n in bare.get(c, []) if n in plan.keys and n not in arguments)
    distinct = () if plan.keys else tuple(
        n for c in usable for n in bare.get(c, []) if n in arguments and all(
            _distinct_only(a) for a in plan.aggregates if a.arg == n or n in a.by))
    kept = keys + distinct
    columns = tuple(c for c in schema.names if c in usable and (c in late or any(n in kept for n in bare.get(c, []))))
    if not columns or (late and any(_clock(p) for p in pushed)):
        return None  # (the rest of the filter is compiled again at run time: it must not read the clock)
    return DictionaryRead(columns, keys, {c: tuple(p) for c, p in late.items() if c in columns},
                          _conjunction(pushed) if late else scan.filter, distinct)


def _distinct_only(call) -> bool:
    """Whether ``call``'s partial state is only the distinct values of its argument (one list per group)."""
    return not call.by and (call.func in ("count_distinct", "approx_count_distinct")
                            or (call.distinct and call.func != "list"))


def _clock(condition: exp.Expression) -> bool:
    """Whether ``condition`` reads the current time (compiled again, it would read another one)."""
    return any(type(n).__name__.startswith("Current") or (isinstance(n, exp.Anonymous) and n.name.lower() == "now")
               for n in condition.walk())


def _conjunction(parts: list[exp.Expression]) -> exp.Expression | None:
    if not parts:
        return None
    return exp.and_(*[p.copy() for p in parts]) if len(parts) > 1 else parts[0]


def read_columns(plan: Aggregate, read: DictionaryRead) -> tuple[dict[str, object], object | None]:
    """The scanner's columns (the projection, then each late column under a hidden name) and its filter."""
    projection, scan = plan.input, plan.input.input
    columns = dict(zip(projection.names, projection.compiled))
    for index, name in enumerate(read.late):
        columns[f"{_HIDDEN}{index}"] = pc.field(name)
    if not read.late:
        return columns, scan.compiled
    compiled = ExpressionCompiler(scan.source.schema).predicate(read.pushed) if read.pushed is not None else None
    return columns, compiled


def filtered(table: pa.Table, plan: Aggregate, read: DictionaryRead, unify: bool = True) -> pa.Table:
    """``table`` (as :func:`read_columns` asked) with the late conjuncts applied, hidden columns dropped, and
    every dictionary column but the group keys decoded (and, with ``unify``, sharing one dictionary each)."""
    schema = plan.input.input.source.schema
    mask = None
    for index, (name, parts) in enumerate(read.late.items()):
        column = table.column(f"{_HIDDEN}{index}")
        test = ExpressionCompiler(schema).predicate(_conjunction(list(parts)))
        passed = _evaluate(column, name, test)
        mask = passed if mask is None else pc.and_kleene(mask, passed)
    hidden = [n for n in table.column_names if n.startswith(_HIDDEN)]
    table = table.drop_columns(hidden)
    if mask is not None:
        table = table.filter(mask)
    for index, field in enumerate(table.schema):
        if pa.types.is_dictionary(field.type) and field.name not in read.keys and field.name not in read.distinct:
            table = table.set_column(index, field.name, table.column(index).cast(field.type.value_type))
    return unified(table, read.keys) if unify else table


def _evaluate(column: pa.ChunkedArray, name: str, test: pc.Expression) -> pa.ChunkedArray:
    """``test`` (over column ``name``) per row: on the chunks' dictionary values, gathered by their indices.

    Every chunk's dictionary is tested in one evaluation (one per chunk
    costs more than the test on segments of a few thousand rows).
    """
    chunks = [c for c in column.chunks]
    if not chunks:
        return pa.chunked_array([], pa.bool_())
    if not all(pa.types.is_dictionary(c.type) for c in chunks):
        return pa.chunked_array([_project(pa.table({name: column.cast(_value_type(column.type))}), test)])
    value_type = column.type.value_type
    values = pa.concat_arrays([c.dictionary for c in chunks] + [pa.nulls(1, value_type)])
    tested = _project(pa.table({name: values}), test)
    alone = tested[len(values) - 1]  # a NULL row has a NULL index, not a NULL value: tested as one
    out, offset = [], 0
    for chunk in chunks:
        passed = tested.slice(offset, len(chunk.dictionary)).take(chunk.indices)
        if chunk.indices.null_count:
            passed = pc.if_else(pc.is_null(chunk.indices), alone, passed)
        out.append(passed)
        offset += len(chunk.dictionary)
    return pa.chunked_array(out, pa.bool_())


def _value_type(type_: pa.DataType) -> pa.DataType:
    return type_.value_type if pa.types.is_dictionary(type_) else type_


def _project(table: pa.Table, test: pc.Expression) -> pa.Array:
    declaration = acero.Declaration.from_sequence([
        acero.Declaration("table_source", acero.TableSourceNodeOptions(table)),
        acero.Declaration("project", acero.ProjectNodeOptions([test], ["m"])),
    ])
    result = declaration.to_table(use_threads=False).column(0)
    return result.combine_chunks() if result.num_chunks != 1 else result.chunk(0)


def unified(table: pa.Table, names: tuple[str, ...]) -> pa.Table:
    """``table`` with the chunks of each dictionary column of ``names`` sharing one dictionary (what Acero's
    grouping needs; distinct values are taken chunk by chunk and need none)."""
    chosen = [n for n in names if n in table.column_names and pa.types.is_dictionary(table.schema.field(n).type)]
    if not chosen:
        return table
    keys = table.select(chosen).unify_dictionaries()
    for name in chosen:
        table = table.set_column(table.schema.get_field_index(name), name, keys.column(name))
    return table


def decoded(table: pa.Table) -> pa.Table:
    """``table`` with its dictionary columns as plain columns of their value type."""
    for index, field in enumerate(table.schema):
        if pa.types.is_dictionary(field.type):
            table = table.set_column(index, field.name, table.column(index).cast(field.type.value_type))
    return table
