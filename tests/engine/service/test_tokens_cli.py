"""`petrel tokens create|list|revoke`: tokens stored hashed in the warehouse, revocable, never listed in clear."""

from __future__ import annotations

import json
import os

import pytest

from engine.cli import main
from engine.service.tenants import TokenStore
from storage.errors import Unauthorized
from storage.objectstore import ObjectStore


def test_tokens_are_created_listed_and_revoked_from_the_command_line(tmp_path, capsys):
    root = str(tmp_path / "wh")
    assert main(["--warehouse", root, "tokens", "create", "--namespace", "acme", "--allow", "s3://dims/public/",
                 "--limit", "query_timeout=5", "--limit", "max_concurrent_queries=2"]) == 0
    token = capsys.readouterr().out.strip()
    assert token.startswith("ptl_") and len(token) > 40
    tokens = TokenStore(ObjectStore(root))
    tenant = tokens.authenticate(token)
    assert tenant.namespace == "acme" and tenant.table_functions == ("s3://dims/public/",)
    assert tenant.limits.query_timeout == 5 and tenant.limits.max_concurrent_queries == 2

    stored = b"".join(open(os.path.join(folder, name), "rb").read()
                      for folder, _, names in os.walk(root) for name in names)
    assert token.encode() not in stored  # only its hash is kept

    assert main(["--warehouse", root, "tokens", "list"]) == 0
    listed = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(t["namespace"], t["revoked"]) for t in listed] == [("acme", False)]
    assert token not in json.dumps(listed)

    assert main(["--warehouse", root, "tokens", "revoke", listed[0]["token_id"]]) == 0
    with pytest.raises(Unauthorized):
        TokenStore(ObjectStore(root)).authenticate(token)
    assert main(["--warehouse", root, "tokens", "revoke", listed[0]["token_id"]]) == 1  # already revoked


def test_bad_token_requests_are_refused_with_what_to_do(tmp_path, capsys):
    root = str(tmp_path / "wh")
    assert main(["--warehouse", root, "tokens", "create", "--namespace", "../escape"]) == 1
    assert "namespace" in capsys.readouterr().err
    assert main(["--warehouse", root, "tokens", "create", "--namespace", "acme", "--limit", "speed=3"]) == 1
    assert "unknown tenant limit" in capsys.readouterr().err
