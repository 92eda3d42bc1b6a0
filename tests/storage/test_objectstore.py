"""The object store on every backend: put-if-absent, listing, pickling, races and torn writes."""

from __future__ import annotations

import multiprocessing
import os
import pickle
import threading

import pytest

from storage.errors import CommitConflict, PetrelError
from storage.objectstore import ObjectStore


def test_put_if_absent_second_writer_conflicts(store):
    store.put_if_absent("a/b.json", b"first")
    with pytest.raises(CommitConflict, match="a/b.json"):
        store.put_if_absent("a/b.json", b"second")
    assert store.get("a/b.json") == b"first"


def test_put_get_list_delete(store):
    store.put("t/data/x.parquet", b"abc")
    store.put("t/data/y.parquet", b"defg")
    store.put("t/_log/0/1.json", b"{}")
    assert [i.path for i in store.list("t/data")] == ["t/data/x.parquet", "t/data/y.parquet"]
    assert {i.path for i in store.list("t", recursive=True)} == {
        "t/data/x.parquet", "t/data/y.parquet", "t/_log/0/1.json"}
    assert store.list_dirs("t") == ["_log", "data"]
    assert store.list("nothing/here") == []
    store.delete("t/data/x.parquet")
    store.delete("t/data/never-existed")
    assert not store.exists("t/data/x.parquet")
    with pytest.raises(FileNotFoundError):
        store.get("t/data/x.parquet")


def test_a_handle_sees_what_another_handle_wrote_and_deleted_after_it_listed(store):
    # a query worker, a compactor and a vacuum each hold their own handle on one root
    other = pickle.loads(pickle.dumps(store))
    store.put("t/data/h/old.parquet", b"old")
    assert [i.path for i in store.list("t/data", recursive=True)] == ["t/data/h/old.parquet"]
    other.put("t/data/h/new.parquet", b"new")
    other.delete("t/data/h/old.parquet")
    assert store.get("t/data/h/new.parquet") == b"new"
    assert store.exists("t/data/h/new.parquet") and not store.exists("t/data/h/old.parquet")
    assert [i.path for i in store.list("t/data", recursive=True)] == ["t/data/h/new.parquet"]


def test_handle_pickles_and_works_on_the_other_side(store):
    store.put("k", b"v")
    clone = pickle.loads(pickle.dumps(store))
    assert clone.get("k") == b"v"
    assert clone.location == store.location  # a local root travels absolute, as file://


def test_threads_race_for_one_path_exactly_one_wins(store):
    # On s3 this exercises moto's threaded server, whose If-None-Match check is
    # not atomic: the race can pass without proving S3's guarantee, which
    # test_s3_conditional_put_refuses_an_existing_key checks deterministically.
    winners, losers = [], []
    barrier = threading.Barrier(8)

    def race(i: int) -> None:
        barrier.wait()
        try:
            store.put_if_absent("race/00000000000000000001.json", str(i).encode())
            winners.append(i)
        except CommitConflict:
            losers.append(i)

    threads = [threading.Thread(target=race, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(winners) == 1 and len(losers) == 7
    assert store.get("race/00000000000000000001.json") == str(winners[0]).encode()


def test_unknown_scheme_is_refused():
    with pytest.raises(PetrelError, match="gopher"):
        ObjectStore("gopher://x/y")


def test_local_torn_write_leaves_no_visible_object(tmp_path):
    store = ObjectStore(str(tmp_path))
    os.makedirs(tmp_path / "t" / "_log" / "0")
    (tmp_path / "t" / "_log" / "0" / ".tmp-deadbeef").write_bytes(b'{"half')  # a crash mid-write
    assert store.list("t/_log/0") == []
    assert [i.path for i in store.list("t/_log/0", include_temporary=True)] == ["t/_log/0/.tmp-deadbeef"]
    assert [i.path for i in store.list("t", recursive=True, include_temporary=True)] == ["t/_log/0/.tmp-deadbeef"]
    store.put_if_absent("t/_log/0/00000000000000000000.json", b"{}")
    assert [i.path for i in store.list("t/_log/0")] == ["t/_log/0/00000000000000000000.json"]


@pytest.mark.s3
def test_s3_conditional_put_refuses_an_existing_key(s3_options):
    import boto3
    from botocore.exceptions import ClientError

    store = ObjectStore("s3://petrel-test/conditional", s3_options)
    store.put_if_absent("log/00000000000000000000.json", b"first")
    with pytest.raises(CommitConflict, match="00000000000000000000.json") as refused:
        store.put_if_absent("log/00000000000000000000.json", b"second")
    assert "pre-conditions" in str(refused.value.__cause__)  # s3fs's words for the endpoint's 412
    assert store.get("log/00000000000000000000.json") == b"first"
    # the endpoint itself refuses the conditional PUT: no client-side check stands in for it
    client = boto3.client("s3", endpoint_url=s3_options["endpoint_url"], region_name="us-east-1",
                          aws_access_key_id="testing", aws_secret_access_key="testing")
    with pytest.raises(ClientError) as error:
        client.put_object(Bucket="petrel-test", Key="conditional/log/00000000000000000000.json",
                          Body=b"third", IfNoneMatch="*")
    assert error.value.response["ResponseMetadata"]["HTTPStatusCode"] == 412


def _process_race(root: str, n: int, queue) -> None:
    store = ObjectStore(root)
    won = 0
    for version in range(n):
        try:
            store.put_if_absent(f"p/{version:020d}.json", str(os.getpid()).encode())
            won += 1
        except CommitConflict:
            pass
    queue.put(won)


def test_processes_race_each_version_has_one_winner(tmp_path):
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_process_race, args=(str(tmp_path), 50, queue)) for _ in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert sum(queue.get(timeout=10) for _ in procs) == 50
    assert len(ObjectStore(str(tmp_path)).list("p")) == 50
