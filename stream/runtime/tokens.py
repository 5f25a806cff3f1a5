"""API tokens: created once, shown once, stored only as a salted hash with a name and scopes.

A token is 32 random bytes (``secrets``), URL-safe, prefixed ``stk_`` so a leaked one is easy to
search for. The file (``STREAM_API_TOKENS_FILE``) holds, per name, a random salt, the SHA-256 of
salt and token, the scopes and when it was made; never the token. A slow password hash would
add nothing here: a token carries 256 bits of randomness, so its hash cannot be guessed
backwards. A check hashes the presented token with every stored salt and compares each digest
with ``hmac.compare_digest`` (constant time), without stopping at the first match. A worker
reads the file again when its modification time or size changes: adding or revoking a token
takes effect without a restart.

The file also holds the deployment's peer key (random, made with the first token): workers that
read the same file prove to each other that a request comes from a peer (:meth:`TokenStore.peer_proof`),
for what one worker asks another on a client's behalf (a group member's taste); clients never see it.

>>> import tempfile, pathlib
>>> store = TokenStore(pathlib.Path(tempfile.mkdtemp()) / "tokens.json")
>>> token = store.add("home-page", ["read"])
>>> store.scopes_of(token), store.scopes_of("stk_guess")
(frozenset({'read'}), None)
>>> token in store.path.read_text()
False
>>> store.revoke("home-page"), store.scopes_of(token)
(True, None)
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

__all__ = ["SCOPES", "TokenError", "TokenInfo", "TokenStore"]

#: read: recommendation and group lists; profile: the transparency view; commands: posting
#: commands; admin: anything.
SCOPES = ("read", "profile", "commands", "admin")
_NAME_MAX = 64


class TokenError(ValueError):
    """A token could not be added or revoked (the message says why)."""


@dataclass(frozen=True)
class TokenInfo:
    name: str
    scopes: tuple[str, ...]
    created_ms: int


def _digest(salt: bytes, token: str) -> bytes:
    return hashlib.sha256(salt + token.encode()).digest()


class TokenStore:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._stamp: tuple[int, int] | None = None
        self._entries: list[tuple[bytes, bytes, frozenset[str]]] = []  # (salt, digest, scopes)
        self._peer: bytes | None = None

    # -- the file -----------------------------------------------------------------

    def _read_all(self) -> dict[str, Any]:
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return {}
        return dict(orjson.loads(raw)) if raw.strip() else {}

    def _read(self) -> dict[str, dict[str, Any]]:
        return dict(self._read_all().get("tokens", {}))

    def _write(self, tokens: dict[str, dict[str, Any]]) -> None:
        peer = self._read_all().get("peer_key") or secrets.token_hex(32)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # readable by its owner only
        with os.fdopen(fd, "wb") as f:
            doc = {"tokens": tokens, "peer_key": peer}
            f.write(orjson.dumps(doc, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS))
        os.replace(tmp, self.path)  # readers see the old file or the new one, never half of it

    def _refresh(self) -> None:
        try:
            st = self.path.stat()
            stamp: tuple[int, int] | None = (st.st_mtime_ns, st.st_size)
        except FileNotFoundError:
            stamp = None
        if stamp == self._stamp:
            return
        doc = self._read_all()
        self._entries = [
            (bytes.fromhex(t["salt"]), bytes.fromhex(t["sha256"]), frozenset(t["scopes"]))
            for t in doc.get("tokens", {}).values()
        ]
        self._peer = bytes.fromhex(doc["peer_key"]) if doc.get("peer_key") else None
        self._stamp = stamp

    # -- managing ---------------------------------------------------------------------

    def add(self, name: str, scopes: Iterable[str]) -> str:
        """Create a token; returns it (the only time it is shown)."""
        wanted = tuple(dict.fromkeys(s.strip() for s in scopes if s.strip()))
        unknown = [s for s in wanted if s not in SCOPES]
        if not name or len(name) > _NAME_MAX or not name.replace("-", "").replace("_", "").isalnum():
            raise TokenError(f"name: expected 1-{_NAME_MAX} letters, digits, '-' or '_'; got {name!r}")
        if not wanted or unknown:
            raise TokenError(f"scopes: expected some of {', '.join(SCOPES)}; got {', '.join(wanted) or 'none'}")
        tokens = self._read()
        if name in tokens:
            raise TokenError(f"name: a token named {name!r} exists already (revoke it first)")
        token = "stk_" + secrets.token_urlsafe(32)
        salt = secrets.token_bytes(16)
        tokens[name] = {
            "salt": salt.hex(),
            "sha256": _digest(salt, token).hex(),
            "scopes": list(wanted),
            "created_ms": int(time.time() * 1000),
        }
        self._write(tokens)
        return token

    def revoke(self, name: str) -> bool:
        """Remove the token named ``name``; False when there is none."""
        tokens = self._read()
        if tokens.pop(name, None) is None:
            return False
        self._write(tokens)
        return True

    def list(self) -> list[TokenInfo]:
        return [TokenInfo(name, tuple(t["scopes"]), int(t["created_ms"])) for name, t in sorted(self._read().items())]

    # -- checking -----------------------------------------------------------------------

    def scopes_of(self, token: str) -> frozenset[str] | None:
        """The scopes of a presented token, or None for a token that is not (or no longer) stored."""
        self._refresh()
        found: frozenset[str] | None = None
        for salt, digest, scopes in self._entries:  # every entry, whichever matches: constant time
            if hmac.compare_digest(_digest(salt, token), digest):
                found = scopes
        return found

    def peer_proof(self, subject: str) -> str | None:
        """What a worker presents to a peer asking about ``subject`` (None: no peer key yet)."""
        self._refresh()
        if self._peer is None:
            return None
        return hmac.new(self._peer, subject.encode(), hashlib.sha256).hexdigest()

    def is_peer(self, proof: str | None, subject: str) -> bool:
        """Whether ``proof`` is a peer's for ``subject`` (compared in constant time)."""
        expected = self.peer_proof(subject)
        return expected is not None and proof is not None and hmac.compare_digest(expected, proof)
