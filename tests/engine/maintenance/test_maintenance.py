"""Maintenance on Ray: a killed compactor, compaction and retention on demand and in the loop, expired rows, the CLI."""

from __future__ import annotations

import time
import uuid

import pyarrow as pa
import pytest

import engine
from engine.maintenance.actors import CompactionActor
from engine.ingest.expired import expired_rows, expired_rows_mask
from storage.catalog import Catalog
from storage.objectstore import ObjectStore
from storage.snapshot import load_snapshot
from storage.vacuum import vacuum_table
from tests.maintenance_fixtures import small_segments, snapshot_rows, table_rows
from tests.engine.maintenance.loop_fixtures import wait_for
from tests.storage_fixtures import BASE, append, events

HOUR = 3600


@pytest.mark.chaos
def test_killed_compactor_loses_nothing_doubles_nothing_and_its_orphan_is_vacuumed(ray_warehouse, ray_session):
    ray = ray_session
    url, options = ray_warehouse
    store = ObjectStore(url, options)
    meta = Catalog(store).create_table("acme", "logs")
    small_segments(store, meta, 12, rows=25)
    before = load_snapshot(store, meta)
    expected = snapshot_rows(store, before)
    actor = CompactionActor.remote(store, "acme")
    ref = actor.compact.remote("logs", full=True, job="j", pause_before_commit=True)
    progress = wait_for(lambda: (p := ray.get(actor.progress.remote("j"))) and p["stage"] == "written" and p,
                        "the merged segment to be written")
    ray.kill(actor)
    with pytest.raises(ray.exceptions.RayActorError):
        ray.get(ref)
    (orphan,) = progress["written"]
    assert store.exists(f"{meta.path}/{orphan}")
    after = load_snapshot(store, meta)
    assert after.versions == before.versions and len(after.segments) == 12
    assert snapshot_rows(store, after).equals(expected)
    assert vacuum_table(store, meta, older_than="1h").orphans == 0  # inside the grace period
    assert vacuum_table(store, meta, older_than=0).orphans == 0  # an orphan waits ten minutes whatever the grace
    with engine.connect(url, options, namespace="acme", maintenance=False) as db:  # a new compactor finishes the job
        assert db.vacuum("logs", older_than=0, orphans_older_than=0).orphans == 1
        assert not store.exists(f"{meta.path}/{orphan}")
        report = db.compact("logs", progress=False)
        assert report.removed == 12 and report.added == 1
    assert table_rows(store, meta).equals(expected)


def test_compact_on_demand_with_progress_bar_and_stats(ray_warehouse, capsys):
    url, options = ray_warehouse
    with engine.connect(url, options, namespace="acme", maintenance=False) as db:
        meta = db.create_table("logs", partitions=2)
        small_segments(db.store, meta, 40, rows=10, hours=2)
        expected = table_rows(db.store, meta)
        stats = db.table_stats("logs")
        assert (stats.segments, stats.rows, stats.small_segments, stats.last_compaction) == (40, 400, 40, None)
        report = db.compact("logs")
        err = capsys.readouterr().err
        assert "compacting acme.logs [" in err and "2/2 merges, 40 -> 2 segments, 400 rows" in err  # a day per partition
        assert report.removed == 40 and report.added == 2
        stats = db.table_stats("logs")
        assert (stats.segments, stats.rows, stats.buckets) == (2, 400, 2)
        assert stats.oldest_event == int(BASE.timestamp() * 1e6) and stats.last_compaction is not None
        assert table_rows(db.store, meta).equals(expected)
        assert db.vacuum("logs").segments == 0  # inside the grace period
        assert db.vacuum("logs", older_than=0).segments == 40


def test_alter_table_retention_drops_old_segments_now(ray_warehouse):
    url, options = ray_warehouse
    with engine.connect(url, options, namespace="acme", maintenance=False) as db:
        meta = db.create_table("logs")
        now = time.time()
        for hours_ago in (50, 30, 2):
            append(db.store, meta, events(5, hour=0).set_column(
                0, "timestamp", pa.array([_ago(now, hours_ago * HOUR - i) for i in range(5)],
                                         pa.timestamp("us", tz="UTC"))))
        altered = db.alter_table("logs", retention="1d")
        assert altered.retention == 86400 and db.table("logs").retention == 86400
        assert db.table_stats("logs").rows == 5
        db.alter_table("logs", retention=None)
        assert db.table("logs").retention is None


def test_background_loop_compacts_and_applies_retention(tmp_path, ray_session):
    with engine.connect(str(tmp_path / "wh"), namespace="acme",
                        maintenance={"interval": 0.2, "vacuum_interval": 0.5, "grace": 0}) as db:
        meta = db.create_table("logs", retention="30d")
        for i in range(8):  # one size tier in the current hour: merged without waiting for it to settle
            append(db.store, meta, events(10, start=i * 10).set_column(
                0, "timestamp", pa.array([_ago(time.time(), 60 - j) for j in range(10)],
                                         pa.timestamp("us", tz="UTC"))))
        append(db.store, meta, events(10, start=1000).set_column(  # past the 30 days already
            0, "timestamp", pa.array([_ago(time.time(), 40 * 86400 + j) for j in range(10)],
                                     pa.timestamp("us", tz="UTC"))))
        stats = wait_for(lambda: (s := db.table_stats("logs")).segments == 1 and s,
                         "the background loop to compact and expire", timeout=120)
        assert stats.rows == 80 and stats.last_compaction is not None
        status = wait_for(lambda: (s := db.maintenance.status()).vacuum.segments >= 9 and s,
                          "the background vacuum", timeout=120)
        assert status.compaction.removed == 8 and status.retention.segments == 1 and not status.errors


def test_expired_rows_are_named_with_a_reason():
    meta = Catalog(ObjectStore(f"memory://{uuid.uuid4().hex}")).create_table("acme", "logs", retention="7d")
    now = time.time()
    table = pa.table({"timestamp": pa.array([_ago(now, 8 * 86400), _ago(now, 60), None, _ago(now, 30 * 86400)],
                                            pa.timestamp("us", tz="UTC"))})
    assert expired_rows_mask(table, meta, now).to_pylist() == [True, False, False, True]
    rows = expired_rows(table, meta, row_numbers=[10, 11, 12, 13], now=now)
    assert [r for r, _ in rows] == [10, 13]
    assert "older than the 7d retention of table acme.logs" in rows[0][1]
    forever = Catalog(ObjectStore(f"memory://{uuid.uuid4().hex}")).create_table("acme", "logs")
    assert expired_rows_mask(table, forever, now) is None and expired_rows(table, forever) == []


def test_ingest_rejects_events_past_retention_with_a_reason(tmp_path, ray_session):
    from engine.ingest.rejected import REJECTED_TABLE

    with engine.connect(str(tmp_path / "wh"), namespace="acme", maintenance=False) as db:
        db.create_table("logs", retention="7d")
        now = time.time()
        events = [{"timestamp": _ago(now, 60).isoformat(), "msg": "fresh"},
                  {"timestamp": _ago(now, 10 * 86400).isoformat(), "msg": "late"},
                  {"timestamp": _ago(now, 120).isoformat(), "msg": "fresh too"}]
        receipt = db.ingest("logs", events)
        assert receipt.accepted == 2
        ((row, reason),) = receipt.rejected
        assert row == 1 and "older than the 7d retention of table acme.logs" in reason
        assert db.sql("SELECT msg FROM logs ORDER BY msg").column("msg").to_pylist() == ["fresh", "fresh too"]
        kept = db.sql(f'SELECT "table", "row", reason FROM {REJECTED_TABLE}').to_pylist()
        assert kept == [{"table": "logs", "row": 1, "reason": reason}]
        db.alter_table("logs", retention="30d")  # the late event is inside the new period
        assert db.ingest("logs", events[1:2]).accepted == 1


def _ago(now: float, seconds: float):
    import datetime as dt

    return dt.datetime.fromtimestamp(now - seconds, dt.timezone.utc)


def test_petrel_compact_and_stats(tmp_path, ray_session, capsys):
    import json

    from engine.cli import main

    root = str(tmp_path / "wh")
    store = ObjectStore(root)
    meta = Catalog(store).create_table("acme", "logs")
    small_segments(store, meta, 6, rows=10)
    assert main(["--warehouse", root, "--namespace", "acme", "stats"]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split()[:4] == ["table", "segments", "small", "rows"]
    assert table[1].split()[:4] == ["acme.logs", "6", "6", "60"]
    assert main(["--warehouse", root, "--namespace", "acme", "compact", "logs"]) == 0
    captured = capsys.readouterr()
    assert "merged 6 segments into 1 (60 rows" in captured.out
    assert "compacting acme.logs [" in captured.err
    assert main(["--warehouse", root, "--namespace", "acme", "stats", "logs", "--json"]) == 0
    (stats,) = json.loads(capsys.readouterr().out)
    assert (stats["segments"], stats["rows"], stats["small_segments"]) == (1, 60, 1)
    assert main(["--warehouse", root, "--namespace", "acme", "compact", "nope"]) == 1
    assert "table acme.nope does not exist" in capsys.readouterr().err
