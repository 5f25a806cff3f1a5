"""Snapshots of the deployment-wide model on the ``model-snapshots`` topic (compacted, one partition).

A snapshot is :meth:`stream.learning.shared.SharedModel.to_state` packed (:func:`pack`: an ``.npz``
archive, its numpy arrays stored as arrays and the rest as JSON, read back without pickle),
and cut into chunks of at most :data:`CHUNK_BYTES` (a record must stay under the broker's
``message.max.bytes``, 1 MiB by default), each keyed ``<snapshot id>/<n>``, then one *manifest*
keyed ``manifest`` (``schemas/model-snapshot.json``): the snapshot's id, the model-topic offset
it holds everything up to (``as_of``), its chunks' count, length and BLAKE2b digest. The writer
sends the manifest once every chunk is delivered, then deletes (tombstones) the chunks of the
snapshot before, so compaction keeps one snapshot and one manifest.

A worker that starts reads the topic whole (:func:`latest` takes the newest value of each key, as
compaction would) and takes the manifest's snapshot if every chunk is there and matches the
digest; then it reads the model topic from ``as_of + 1`` (:mod:`stream.runtime.app`).

>>> import numpy as np
>>> state = {"format": 1, "factors": {"b": np.arange(3, dtype=np.float32), "titles": ["a", "b", "c"]}}
>>> unpack(pack(state))["factors"]["b"].tolist()
[0.0, 1.0, 2.0]
>>> records, manifest = encode(b'{"format": 1}' * 100, as_of=41, snapshot_id="s1", written_ms=0, chunk_bytes=500)
>>> [key for key, _ in records]
[b's1/0', b's1/1', b's1/2']
>>> found = latest([*records, (MANIFEST, manifest)])
>>> found.manifest["as_of"], found.payload == b'{"format": 1}' * 100, found.stale
(41, True, [])
>>> latest(records) is None  # no manifest: no snapshot
True
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

__all__ = [
    "CHUNK_BYTES",
    "MANIFEST",
    "Compacted",
    "Found",
    "SnapshotError",
    "chunk_keys",
    "encode",
    "latest",
    "pack",
    "unpack",
]

MANIFEST = b"manifest"
#: Largest chunk: well under the broker's default message.max.bytes (1 MiB) with the record's overhead.
CHUNK_BYTES = 512 * 1024
_ARRAY = "$array"  # an array's place in the packed JSON: {"$array": its name in the archive}


class SnapshotError(ValueError):
    """The newest snapshot on the topic cannot be used (incomplete, corrupt, or not one)."""


@dataclass(frozen=True)
class Found:
    #: The manifest (schemas/model-snapshot.json).
    manifest: dict[str, Any]
    #: The packed snapshot (:func:`unpack` reads it).
    payload: bytes
    #: Chunk keys of other snapshots written before this one's manifest: left over, to be deleted.
    stale: list[bytes]


def pack(state: dict[str, Any]) -> bytes:
    """``state`` (JSON values, and numpy arrays as values of its dicts) as the bytes of an ``.npz`` archive:
    each array as itself, the rest as JSON in the array ``state``, each array's place marked in it."""
    arrays: dict[str, Any] = {}

    def strip(node: Any) -> Any:
        if isinstance(node, np.ndarray):
            name = f"a{len(arrays)}"
            arrays[name] = node
            return {_ARRAY: name}
        if isinstance(node, dict):
            return {k: strip(v) for k, v in node.items()}
        return node

    tree = orjson.dumps(strip(state))
    buffer = io.BytesIO()
    arrays["state"] = np.frombuffer(tree, dtype=np.uint8)
    np.savez(buffer, allow_pickle=False, **arrays)
    return buffer.getvalue()


def unpack(payload: bytes) -> dict[str, Any]:
    """The state :func:`pack` packed (no pickle is read); SnapshotError if ``payload`` is not one."""
    try:
        with np.load(io.BytesIO(payload), allow_pickle=False) as archive:
            arrays = {name: archive[name] for name in archive.files}
        tree = orjson.loads(arrays.pop("state").tobytes())
    except Exception as exc:  # numpy raises what it meets (EOFError for nothing, TypeError for a lone array)
        raise SnapshotError(f"not a packed snapshot: {exc!r}") from exc

    def fill(node: Any) -> Any:
        if isinstance(node, dict):
            if len(node) == 1 and isinstance(node.get(_ARRAY), str):
                if node[_ARRAY] not in arrays:
                    raise SnapshotError(f"the array {node[_ARRAY]!r} is missing")
                return arrays[node[_ARRAY]]
            return {k: fill(v) for k, v in node.items()}
        return node

    state = fill(tree)
    if not isinstance(state, dict):
        raise SnapshotError("not a packed snapshot: expected an object")
    return state


def encode(
    payload: bytes, as_of: int, snapshot_id: str, written_ms: int, chunk_bytes: int = CHUNK_BYTES
) -> tuple[list[tuple[bytes, bytes]], bytes]:
    """The chunk records (key, value) of a snapshot :func:`pack` packed into ``payload``, and its manifest's
    value. Not compressed: zlib's fastest level took 2.6 s to save 17 % of a 100,000-title replica (most of
    it float64 counts, whose bits compress little)."""
    pieces = [payload[at : at + chunk_bytes] for at in range(0, len(payload), chunk_bytes)] or [b""]
    manifest = {
        "id": snapshot_id,
        "as_of": as_of,
        "chunks": len(pieces),
        "bytes": len(payload),
        "blake2b": hashlib.blake2b(payload, digest_size=16).hexdigest(),
        "encoding": "npz",
        "written_ms": written_ms,
    }
    records = [(f"{snapshot_id}/{n}".encode(), piece) for n, piece in enumerate(pieces)]
    return records, orjson.dumps(manifest)


def chunk_keys(manifest: dict[str, Any]) -> list[bytes]:
    return [f"{manifest['id']}/{n}".encode() for n in range(int(manifest["chunks"]))]


class Compacted:
    """The newest value of each key of records read in topic order, as compaction would leave them (a
    tombstone removes its key): :meth:`add` each fetched batch, then :meth:`latest`. Only what is
    current is held, however many snapshots the topic still holds before compaction."""

    def __init__(self) -> None:
        self._values: dict[bytes, tuple[int, bytes]] = {}  # key -> (position read, value)
        self._n = 0

    def put(self, key: bytes | None, value: bytes | None) -> None:
        """The next record read (a keyless one counts, and is dropped)."""
        self._n += 1
        if key is None:
            return
        if value is None:  # a tombstone: the key is gone
            self._values.pop(key, None)
        else:
            self._values[key] = (self._n, value)

    def add(self, records: Iterable[Any]) -> None:
        """Records with ``key`` and ``value`` (aiokafka's), in topic order."""
        for record in records:
            self.put(record.key, record.value)

    def records(self) -> list[tuple[bytes, bytes]]:
        """The current (key, value) pairs, in the order they were written."""
        return [(key, value) for key, (_, value) in sorted(self._values.items(), key=lambda kv: kv[1][0])]

    def latest(self) -> Found | None:
        """The snapshot of the newest manifest; None if there is none. SnapshotError if its chunks are missing
        or do not match it."""
        values = {key: value for key, (_, value) in self._values.items()}
        raw = values.pop(MANIFEST, None)
        if raw is None:
            return None
        try:
            manifest = orjson.loads(raw)
            count, expected_bytes = int(manifest["chunks"]), int(manifest["bytes"])
            digest, as_of = str(manifest["blake2b"]), int(manifest["as_of"])
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise SnapshotError(f"the manifest is not one: {exc!r}") from exc
        if not 0 < count <= len(values) or expected_bytes < 0:  # checked before a key is made per chunk
            raise SnapshotError(f"snapshot {manifest.get('id')} as of {as_of}: {count} chunks missing or more")
        keys = chunk_keys(manifest)
        missing = [k.decode() for k in keys if k not in values]
        if missing:
            raise SnapshotError(f"snapshot {manifest['id']} as of {as_of}: chunks missing ({', '.join(missing[:3])})")
        packed = b"".join(values[k] for k in keys)
        if len(packed) != expected_bytes or hashlib.blake2b(packed, digest_size=16).hexdigest() != digest:
            raise SnapshotError(f"snapshot {manifest['id']} as of {as_of}: its chunks do not match the manifest")
        mine, written = set(keys), self._values[MANIFEST][0]
        # chunks of other snapshots written before this manifest (those after it may be a snapshot being written)
        stale = [k for k in values if k not in mine and self._values[k][0] < written]
        return Found(manifest, packed, stale)


def latest(records: Iterable[tuple[bytes | None, bytes | None]]) -> Found | None:
    """The snapshot of the newest manifest among ``records`` (key, value; in topic order): see
    :meth:`Compacted.latest`."""
    compacted = Compacted()
    for key, value in records:
        compacted.put(key, value)
    return compacted.latest()
