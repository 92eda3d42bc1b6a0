"""TPC-H's 22 queries on Petrel and on DuckDB over the same segment files.

The project's generator makes the data at ``scale`` (0.17 gives about a
million lineitem rows); each table is stored as Petrel segments over two
partitions, and DuckDB reads exactly those Parquet files.
"""

from __future__ import annotations

import statistics
import time

from benchmarks.tpch.datagen import generate
from benchmarks.tpch.queries import queries
from storage.log import PartitionLog
from storage.segment import write_segment

ROWS_PER_SEGMENT = 100_000


def load(db, scale: float, partitions: int = 2) -> dict[str, list[str]]:
    """Generate and store the eight tables; return each table's segment files."""
    files = {}
    for name, table in generate(scale=scale).items():
        if name in db.tables():
            db.drop_table(name)
        meta = db.create_table(name, partitions=partitions)
        logs = [PartitionLog(db.store, meta.path, p) for p in range(partitions)]
        added: list[list] = [[] for _ in range(partitions)]
        for index, start in enumerate(range(0, max(table.num_rows, 1), ROWS_PER_SEGMENT)):
            entry = write_segment(db.store, meta.path, table.slice(start, ROWS_PER_SEGMENT), partition=index % partitions,
                                  time_column=meta.time_column, sort_key=meta.full_sort_key)
            added[index % partitions].append(entry)
        for partition, log in enumerate(logs):
            if added[partition]:
                log.commit(log.load(), epoch=None, added=added[partition])
        files[name] = [f"{db.store.root}/{meta.path}/{s.path}" for s in db.queries.resolve(name).segments]
    return files


def run(db, duck, scale: float, repeat: int) -> list[dict]:
    """Load, then time every query on both engines (median of ``repeat`` warm runs)."""
    started = time.perf_counter()
    files = load(db, scale)
    rows = sum(db.sql(f"SELECT count(*) AS n FROM {t}").column("n")[0].as_py() for t in ("lineitem",))
    print(f"TPC-H scale {scale}: {rows:,} lineitem rows, loaded in {time.perf_counter() - started:.1f} s")
    for name, paths in files.items():
        listing = ", ".join(f"'{p}'" for p in paths)
        duck.execute(f"CREATE OR REPLACE VIEW {name} AS SELECT * FROM read_parquet([{listing}])")
    results = []
    for number, query in queries().items():
        db.sql(query)
        duck.sql(query).to_arrow_table()
        ours = _median(lambda: db.sql(query), repeat)
        theirs = _median(lambda: duck.sql(query).to_arrow_table(), repeat)
        results.append({"query": f"tpch_q{number:02d}", "petrel_s": ours, "duckdb_s": theirs,
                        "ratio": ours / theirs if theirs else None})
        print(f"tpch_q{number:02d}{'':21s} petrel {ours * 1000:9.1f} ms   duckdb {theirs * 1000:9.1f} ms   "
              f"ratio {ours / theirs:6.2f}", flush=True)
    return results


def _median(call, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        begun = time.perf_counter()
        call()
        times.append(time.perf_counter() - begun)
    return statistics.median(times)
