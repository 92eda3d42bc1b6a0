"""Table functions and ingest_files read only where the session's allow-list says, never the warehouse."""

from __future__ import annotations

import http.server
import os
import threading

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import engine
from engine.file_access import FileAccess
from storage.errors import AccessDenied, PetrelError, SqlError
from storage.objectstore import ObjectStore

EVENTS = pa.table({"timestamp": pa.array([1_700_000_000_000_000 + i for i in range(5)], pa.timestamp("us")),
                   "secret": [f"b-secret-{i}" for i in range(5)]})


@pytest.fixture
def warehouse(ray_session, tmp_path):
    """A local warehouse where namespace 'b' holds a table with secrets."""
    root = str(tmp_path / "warehouse")
    with engine.connect(root, namespace="b", maintenance=False) as other:
        other.create_table("events")
        other.ingest("events", EVENTS)
    return root


class _Recorder(http.server.SimpleHTTPRequestHandler):
    """Serves a folder and remembers every path requested; /redirect sends clients elsewhere."""

    requests: list[str] = []

    def do_GET(self) -> None:  # noqa: N802 - the http.server API
        type(self).requests.append(self.path)
        if self.path.startswith("/ok/redirect"):
            self.send_response(302)
            self.send_header("Location", "/private/data.csv")
            self.end_headers()
            return
        super().do_GET()

    def do_HEAD(self) -> None:  # noqa: N802
        type(self).requests.append(self.path)
        super().do_HEAD()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def web(tmp_path):
    """A loopback HTTP server over a folder with /ok/data.csv and /private/data.csv."""
    folder = tmp_path / "web"
    for name in ("ok", "private"):
        (folder / name).mkdir(parents=True)
        (folder / name / "data.csv").write_text(f"kind,n\n{name},1\n")
    _Recorder.requests = []
    handler = lambda *a, **k: _Recorder(*a, directory=str(folder), **k)  # noqa: E731
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", _Recorder.requests
    server.shutdown()
    server.server_close()


def _segments(root: str) -> list[str]:
    found = []
    for folder, _, names in os.walk(os.path.join(root, "b", "events")):
        found += [os.path.join(folder, n) for n in names if n.endswith(".parquet")]
    assert found
    return found


def test_a_namespace_cannot_read_another_namespaces_segments_by_path(warehouse, tmp_path):
    segment = _segments(warehouse)[0]
    link = tmp_path / "innocent.parquet"
    os.symlink(segment, link)
    spellings = [segment, "file://" + segment, os.path.join(warehouse, "a", "..", "b", "events", "data", "**", "*.parquet"),
                 str(link), str(tmp_path / "*.parquet")]
    with engine.connect(warehouse, namespace="a", maintenance=False) as db:
        for path in spellings:
            with pytest.raises(AccessDenied, match="inside the warehouse"):
                db.sql(f"SELECT * FROM read_parquet('{path}')")
            with pytest.raises(AccessDenied):
                db.explain(f"SELECT * FROM read_parquet('{path}')")


def test_etc_passwd_is_refused_unless_local_files_are_allowed(warehouse, tmp_path):
    query = "SELECT * FROM read_csv('/etc/passwd', delim=':', header=false)"
    for setting in ("off", [str(tmp_path / "allowed") + "/"], ["s3://bucket/dims/"]):
        with engine.connect(warehouse, namespace="a", maintenance=False, table_functions=setting) as db:
            with pytest.raises(AccessDenied, match="/etc/passwd"):
                db.sql(query)


def test_http_reaches_only_allow_listed_prefixes_and_follows_no_redirect(warehouse, web):
    base, requests = web
    with engine.connect(warehouse, namespace="a", maintenance=False) as db:  # "local": no network at all
        with pytest.raises(AccessDenied):
            db.sql(f"SELECT * FROM read_csv('{base}/ok/data.csv')")
    assert requests == []
    with engine.connect(warehouse, namespace="a", maintenance=False, table_functions=[f"{base}/ok/"]) as db:
        assert db.sql(f"SELECT kind FROM read_csv('{base}/ok/data.csv')").column("kind").to_pylist() == ["ok"]
        for denied in (f"{base}/private/data.csv", f"{base}/ok/../private/data.csv", f"{base}/ok%2F..%2Fprivate/data.csv",
                       "http://127.0.0.2:1/ok/data.csv", "/etc/hostname"):
            with pytest.raises(AccessDenied):
                db.sql(f"SELECT * FROM read_csv('{denied}')")
        with pytest.raises(PetrelError):
            db.sql(f"SELECT * FROM read_csv('{base}/ok/redirect')")
    assert not any(r.startswith("/private") for r in requests)


def test_chained_and_unknown_protocols_are_refused(warehouse):
    with engine.connect(warehouse, namespace="a", maintenance=False) as db:
        for url in ("simplecache::file:///etc/passwd", "memory://anything/x.csv", "ftp://host/x.csv",
                    "zip://passwd::file:///tmp/x.zip"):
            with pytest.raises(AccessDenied):
                db.sql(f"SELECT * FROM read_csv('{url}')")


def test_read_errors_do_not_echo_file_contents(warehouse, tmp_path):
    bad = tmp_path / "creds.csv"
    bad.write_text("user,password\nroot,hunter2-s3cr3t,extra,columns\n")
    jsonl = tmp_path / "creds.json"
    jsonl.write_text('{"token": "tok-s3cr3t"}\n{"token": tok-s3cr3t-unquoted}\n')
    with engine.connect(warehouse, namespace="a", maintenance=False) as db:
        for query in (f"SELECT * FROM read_csv('{bad}')", f"SELECT * FROM read_json('{jsonl}')",
                      f"SELECT * FROM read_parquet('{bad}')"):
            with pytest.raises(SqlError) as caught:
                db.sql(query)
            assert "s3cr3t" not in str(caught.value) and "hunter2" not in str(caught.value)


def test_explain_reads_only_the_schema(warehouse, tmp_path):
    big = tmp_path / "big.csv"
    good = "".join(f"{i},name-{i}\n" for i in range(200_000))  # several MB: more than the first block
    big.write_text("id,name\n" + good + "broken,row,with,too,many,columns\n")
    with engine.connect(warehouse, namespace="a", maintenance=False) as db:
        plan = db.explain(f"SELECT name FROM read_csv('{big}') WHERE id > 5")
        assert "name" in plan
        assert db.sql(f"EXPLAIN SELECT name FROM read_csv('{big}')").num_rows > 0
        with pytest.raises(SqlError):  # reading the rows reaches the broken one
            db.sql(f"SELECT name FROM read_csv('{big}')")


def test_ingest_files_is_confined_like_table_functions(warehouse, tmp_path):
    events = tmp_path / "in.jsonl"
    events.write_text('{"timestamp": "2026-01-01T00:00:00Z", "x": 1}\n')
    with engine.connect(warehouse, namespace="a", maintenance=False, table_functions="off") as db:
        db.create_table("copied")
        with pytest.raises(AccessDenied):
            db.ingest_files("copied", str(events), progress=False)
    with engine.connect(warehouse, namespace="a", maintenance=False) as db:
        with pytest.raises(AccessDenied, match="inside the warehouse"):
            db.ingest_files("copied", _segments(warehouse), progress=False)
        assert db.ingest_files("copied", str(events), progress=False).accepted == 1


def test_remote_reads_never_carry_the_warehouse_credentials(tmp_path):
    store = ObjectStore("s3://warehouse-bucket/root", {"key": "warehouse-key", "secret": "warehouse-secret"})
    access = FileAccess(["s3://dims/public/", "s3://warehouse-bucket/shared/"], store)
    location = access.resolve("s3://dims/public/hosts.parquet")
    assert location.options.get("anon") is True and "warehouse-key" not in repr(location.options)
    with pytest.raises(AccessDenied, match="inside the warehouse"):
        access.check("s3://warehouse-bucket/root/b/events/data/x.parquet")
    with pytest.raises(AccessDenied):
        access.check("s3://dims/public-but-not-really/x.parquet")
    own = FileAccess({"s3://dims/": {"key": "reader", "secret": "r"}}, store).resolve("s3://dims/x.parquet")
    assert own.options["key"] == "reader"


def test_link_local_addresses_are_refused_unless_named_by_the_prefix(tmp_path):
    store = ObjectStore(str(tmp_path / "wh"))
    with pytest.raises(AccessDenied, match="link-local"):
        FileAccess(["http://169.254.169.254.localtest/"], store)._check_host("169.254.169.254", named=False)
    assert FileAccess(["http://169.254.169.254/"], store).check("http://169.254.169.254/latest") is not None
    with pytest.raises(AccessDenied):
        FileAccess(["http://example.com/"], store).check("http://169.254.169.254/latest")
