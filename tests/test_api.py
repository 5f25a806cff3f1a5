"""API tokens (``stream tokens``) and the authenticated command route, on a real worker."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.error
import urllib.request
from dataclasses import replace
from pathlib import Path
from typing import Any

import orjson
import pytest

from stream.contracts.topics import COMMANDS
from stream.runtime.tokens import TokenError, TokenStore
from stream.settings import Settings

from .helpers import Workers, consume_until

T0 = 1_767_225_600_000


def test_a_token_is_stored_only_as_a_salted_hash_and_checked_by_its_scopes(tmp_path: Path) -> None:
    store = TokenStore(tmp_path / "tokens.json")
    a = store.add("home-page", ["read"])
    b = store.add("privacy-centre", ["commands", "profile"])
    text = (tmp_path / "tokens.json").read_text()
    assert a not in text and b not in text and a.startswith("stk_") and len(a) > 40
    assert (tmp_path / "tokens.json").stat().st_mode & 0o777 == 0o600
    assert store.scopes_of(a) == {"read"} and store.scopes_of(b) == {"commands", "profile"}
    assert store.scopes_of(a + "x") is None and store.scopes_of("") is None
    assert [(i.name, i.scopes) for i in store.list()] == [
        ("home-page", ("read",)),
        ("privacy-centre", ("commands", "profile")),
    ]
    with pytest.raises(TokenError, match="exists already"):
        store.add("home-page", ["read"])
    with pytest.raises(TokenError, match="scopes: expected some of"):
        store.add("x", ["write"])
    with pytest.raises(TokenError, match="name: expected"):
        store.add("a b", ["read"])
    other = TokenStore(tmp_path / "tokens.json")  # another process: a worker
    assert other.scopes_of(a) == {"read"}
    assert store.revoke("home-page") and not store.revoke("home-page")
    assert other.scopes_of(a) is None, "a worker sees a revocation without a restart"


def test_stream_tokens_prints_the_token_once_as_its_last_line(tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "STREAM_API_TOKENS_FILE": str(tmp_path / "t.json")}

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "stream", "tokens", *args], env=env, capture_output=True, text=True, timeout=60
        )

    added = run("add", "ops", "--scopes", "read,profile")
    assert added.returncode == 0, added.stderr
    token = added.stdout.strip().splitlines()[-1]
    assert TokenStore(tmp_path / "t.json").scopes_of(token) == {"read", "profile"}
    listed = run("list")
    assert listed.stdout.startswith("ops\tread,profile\t") and token not in listed.stdout
    assert run("add", "ops", "--scopes", "read").returncode == 2
    assert run("revoke", "ops").returncode == 0 and run("revoke", "ops").returncode == 1


def _post(cfg: Settings, viewer: str, body: bytes, token: str | None) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(
        f"http://{cfg.web_host}:{cfg.web_port}/viewers/{viewer}/commands", data=body, method="POST"
    )
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


async def test_commands_over_http_need_a_token_with_the_commands_scope_and_are_validated(
    settings: Settings, workers: Workers, tmp_path: Path
) -> None:
    tokens = tmp_path / "tokens.json"
    store = TokenStore(tokens)
    reader, writer = store.add("reader", ["read"]), store.add("centre", ["commands"])
    workers.settings = replace(workers.settings, api_tokens_file=tokens, max_body_bytes=2048)
    workers.start()
    cfg = workers.configs[0]
    good = orjson.dumps({"command": "set_preferences", "ts": T0, "dislikes": ["horror"]})

    assert _post(cfg, "u1", good, None)[0] == 401
    assert _post(cfg, "u1", good, "stk_nothing")[0] == 401
    status, body = _post(cfg, "u1", good, reader)
    assert status == 403 and "commands" in body["error"]
    status, body = _post(cfg, "u1", b'{"command": "delete_everything", "ts": 1}', writer)
    assert status == 400 and body["error"].startswith("command: expected one of") and "expected" in body
    status, body = _post(cfg, "u1", orjson.dumps({"user_id": "u2", "command": "opt_out", "ts": T0}), writer)
    assert status == 400 and "user_id" in body["error"], "a command for another viewer than the path's"
    assert _post(cfg, "u1", b"x" * 3000, writer)[0] == 413
    status, body = _post(cfg, "u1", good, writer)
    assert status == 202 and body["published"]["topic"] == settings.topic(COMMANDS)

    records = await consume_until(settings, settings.topic(COMMANDS), lambda r: len(r) >= 1, timeout_s=10)
    assert [(r.key, r.value) for r in records] == [(b"u1", good)], "only the valid command was published"
    store.revoke("centre")
    assert _post(cfg, "u1", good, writer)[0] == 401, "revoked: refused without a restart"
