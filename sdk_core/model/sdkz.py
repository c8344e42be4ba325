"""The compressed model file (``.sdkz``): sparse, weight-shared or int8 weights with the spec.

Layout: ``b"SDKZ"``, a format version byte, three zero bytes, the header length (4 bytes,
little-endian), the header (zlib-compressed JSON), then the payload. The header holds the
spec, string metadata, the payload's length and SHA-256, and one entry per tensor::

    {"shape": [...],
     "positions": STREAM | absent,        # sparse: the gaps between stored entries (see below)
     "values": {"kind": "float32", "data": BLOB}
             | {"kind": "codebook", "codebook": BLOB, "indices": STREAM}
             | {"kind": "int8", "axis": a, "scales": BLOB, "codes": STREAM}}

A BLOB is ``{"offset", "length", "coder": "raw" | "zstd", "count", "dtype"}``: little-endian
floats, ``float16`` where that holds the values exactly (codebooks), else ``float32``; a
STREAM is a BLOB-like slice holding small unsigned symbols coded by :mod:`sdk_core.model.codec`. Sparse
positions are relative, as in Deep Compression: with ``index_bits`` b and M = 2**b - 1, a symbol
t < M means "skip t zeros, then an entry", and t = M means "skip M zeros". Pruned positions
(absent from the stream) are the masks. Reading gives canonical float32 weights; any damage
(a bit flip, a cut, a stream that does not fit its tensor) is one :class:`WeightsError`.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
import zlib
from collections.abc import Mapping
from typing import Any

import attrs
import numpy as np

from ..errors import WeightsError
from . import codec
from .files import FileError, atomic_write, check_input

MAGIC = b"SDKZ"
VERSION = 1
FORMAT = "sdkz/1"
SUFFIX = ".sdkz"
MAX_HEADER = 64 * 2**20
_PREFIX = struct.Struct("<4sB3xI")
_DTYPES = {"float16": "<f2", "float32": "<f4"}


@attrs.frozen
class Encoded:
    """One tensor as the compressor hands it over.

    ``positions``: sorted flat indices of the stored entries (None: every entry, dense).
    ``kind`` ``float32``: ``values`` are the entries. ``codebook``: ``codebook[symbols]`` are
    the entries, ``symbols`` < 2**``bits``. ``int8``: ``(symbols - 128) * scales[channel]``
    along ``axis``."""

    shape: tuple[int, ...]
    kind: str = "float32"
    positions: np.ndarray | None = None
    values: np.ndarray | None = None
    codebook: np.ndarray | None = None
    scales: np.ndarray | None = None
    axis: int = 0
    symbols: np.ndarray | None = None
    bits: int = 8


def is_sdkz(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` starts like a compressed model file (an unreadable path, or one that is
    no regular file: False, without opening it)."""
    try:
        with open(check_input(path), "rb") as f:
            return f.read(4) == MAGIC
    except OSError:
        return False


# -- writing --------------------------------------------------------------------------------
class _Payload:
    def __init__(self) -> None:
        self.parts: list[bytes] = []
        self.size = 0

    def add(self, data: bytes) -> dict[str, int]:
        self.parts.append(data)
        self.size += len(data)
        return {"offset": self.size - len(data), "length": len(data)}

    def blob(self, values: np.ndarray) -> dict[str, Any]:
        """Float values, as float16 where that holds them exactly (codebooks), else float32."""
        values = np.asarray(values, np.float32)
        dtype = "float16" if np.array_equal(values.astype(np.float16).astype(np.float32), values) else "float32"
        raw = np.ascontiguousarray(values, _DTYPES[dtype]).tobytes()
        packed = codec._zstd()[0](raw) if len(raw) > 64 else raw
        coder = "zstd" if len(packed) < len(raw) else "raw"
        data = packed if coder == "zstd" else raw
        return {**self.add(data), "coder": coder, "count": int(values.size), "dtype": dtype}

    def stream(self, symbols: np.ndarray, bits: int, sizes: dict[str, int]) -> dict[str, Any]:
        description, data, options = codec.encode(symbols, bits)
        for name, n in options.items():
            sizes[name] = sizes.get(name, 0) + n
        return {**self.add(data), **description}


def relative_positions(positions: np.ndarray, bits: int) -> np.ndarray:
    """The gap symbols of sorted flat ``positions`` with ``bits``-bit gaps (see the module)."""
    top = (1 << bits) - 1
    gaps = np.diff(np.concatenate([[-1], positions])) - 1
    escapes = gaps // top
    symbols = np.full(int(escapes.sum()) + len(positions), top, np.int64)
    symbols[np.cumsum(escapes + 1) - 1] = gaps % top
    return symbols


def absolute_positions(symbols: np.ndarray, bits: int) -> np.ndarray:
    top = (1 << bits) - 1
    entry = symbols < top
    return (np.cumsum(np.where(entry, symbols + 1, top)) - 1)[entry]


def _index_bits(positions: np.ndarray) -> int:
    """The gap width (2..8 bits) that packs these positions smallest."""
    return min(range(2, 9), key=lambda b: b * len(relative_positions(positions, b)))


def encode_tensor(payload: _Payload, t: Encoded, sizes: dict[str, int]) -> dict[str, Any]:
    entry: dict[str, Any] = {"shape": list(t.shape)}
    if t.positions is not None:
        positions = np.asarray(t.positions, np.int64)
        bits = _index_bits(positions)
        entry["positions"] = payload.stream(relative_positions(positions, bits), bits, sizes)
    if t.kind == "float32":
        entry["values"] = {"kind": "float32", "data": payload.blob(np.asarray(t.values))}
    elif t.kind == "codebook":
        entry["values"] = {
            "kind": "codebook",
            "codebook": payload.blob(np.asarray(t.codebook)),
            "indices": payload.stream(np.asarray(t.symbols), t.bits, sizes),
        }
    elif t.kind == "int8":
        entry["values"] = {
            "kind": "int8",
            "axis": t.axis,
            "scales": payload.blob(np.asarray(t.scales)),
            "codes": payload.stream(np.asarray(t.symbols), 8, sizes),
        }
    else:
        raise WeightsError(f"unknown tensor encoding '{t.kind}'")
    return entry


def write(
    path: str | os.PathLike[str],
    spec_json: str,
    tensors: Mapping[str, Encoded],
    metadata: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Write a compressed model file atomically. Returns the bytes of each tensor and, per
    entropy coder, what the streams would have taken (``{"tensors": {...}, "coders": {...}}``)."""
    payload, coders, per_tensor = _Payload(), dict[str, int](), dict[str, int]()
    entries = {}
    for name, t in tensors.items():
        before = payload.size
        entries[name] = encode_tensor(payload, t, coders)
        per_tensor[name] = payload.size - before
    body = b"".join(payload.parts)
    header = {
        "format": FORMAT,
        "spec": spec_json,
        "metadata": dict(metadata or {}),
        "payload_bytes": len(body),
        "payload_sha256": hashlib.sha256(body).hexdigest(),
        "tensors": entries,
    }
    packed_header = zlib.compress(json.dumps(header, separators=(",", ":")).encode(), 9)
    data = _PREFIX.pack(MAGIC, VERSION, len(packed_header)) + packed_header + body
    try:
        atomic_write(path, data)
    except FileError as exc:
        raise WeightsError(str(exc)) from None
    return {"tensors": per_tensor, "coders": coders, "header_bytes": _PREFIX.size + len(packed_header)}


# -- reading --------------------------------------------------------------------------------
def _read_prefix(f: Any, path: str) -> dict[str, Any]:
    prefix = f.read(_PREFIX.size)
    if len(prefix) < _PREFIX.size or prefix[:4] != MAGIC:
        raise WeightsError(f"'{path}' is not a compressed model file (no SDKZ signature)")
    _, version, length = _PREFIX.unpack(prefix)
    if version != VERSION:
        raise WeightsError(f"'{path}' is a version {version} compressed file; this sdk_core reads version {VERSION}")
    if length > MAX_HEADER:
        raise WeightsError(f"'{path}' claims a {length}-byte header (at most {MAX_HEADER})")
    raw = f.read(length)
    try:
        if len(raw) < length:
            raise ValueError("the file ends inside the header")
        decompressor = zlib.decompressobj()
        text = decompressor.decompress(raw, 16 * MAX_HEADER)
        if decompressor.unconsumed_tail or not decompressor.eof:
            raise ValueError("the header is cut short or too large")
        header = json.loads(text)
    except (ValueError, zlib.error, RecursionError) as exc:
        raise WeightsError(f"'{path}' has a damaged header ({exc})") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT or not isinstance(header.get("tensors"), dict):
        raise WeightsError(f"'{path}' has a header that is not an {FORMAT} header")
    if not isinstance(header.get("spec"), str) or not isinstance(header.get("metadata"), dict):
        raise WeightsError(f"'{path}' has a header without a spec or metadata")
    return header


def _shape(entry: Any, name: str) -> tuple[int, ...]:
    shape = entry.get("shape") if isinstance(entry, dict) else None
    if not isinstance(shape, list) or not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in shape):
        raise WeightsError(f"tensor '{name}' has an invalid shape")
    return tuple(shape)


def read_header(path: str | os.PathLike[str]) -> tuple[dict[str, tuple[int, ...]], dict[str, str]]:
    """Tensor shapes and string metadata (``spec`` and ``format`` included), header only."""
    checked = _check(path)
    with open(checked, "rb") as f:
        header = _read_prefix(f, str(checked))
    shapes = {name: _shape(entry, name) for name, entry in header["tensors"].items()}
    metadata = {str(k): str(v) for k, v in header["metadata"].items()}
    return shapes, {**metadata, "format": FORMAT, "spec": header["spec"]}


def _check(path: str | os.PathLike[str]) -> Any:
    try:
        return check_input(path, "compressed model")
    except FileError as exc:
        raise WeightsError(str(exc)) from None


class _Reader:
    def __init__(self, body: bytes, name: str) -> None:
        self.body, self.name = body, name

    def slice(self, ref: Any) -> bytes:
        ok = isinstance(ref, dict) and all(isinstance(ref.get(k), int) and ref[k] >= 0 for k in ("offset", "length"))
        if not ok or ref["offset"] + ref["length"] > len(self.body):
            raise WeightsError(f"tensor '{self.name}' points outside the file's payload")
        return self.body[ref["offset"] : ref["offset"] + ref["length"]]

    def blob(self, ref: Any) -> np.ndarray:
        data, count, dtype = self.slice(ref), ref.get("count"), ref.get("dtype")
        if not isinstance(count, int) or not 0 <= count <= 2**28 or dtype not in _DTYPES:
            raise WeightsError(f"tensor '{self.name}' has a block without a valid count and dtype")
        size = count * np.dtype(_DTYPES[dtype]).itemsize
        if ref.get("coder") == "zstd":
            data = codec._zstd()[1](data, size)
        elif ref.get("coder") != "raw":
            raise WeightsError(f"tensor '{self.name}' has a block with an unknown coder")
        if len(data) != size:
            raise WeightsError(f"tensor '{self.name}' has a block of the wrong size")
        return np.frombuffer(data, _DTYPES[dtype]).astype(np.float32)

    def stream(self, ref: Any, limit: int) -> np.ndarray:
        """The symbols of a stream of at most ``limit`` symbols (checked before decoding)."""
        count = ref.get("count") if isinstance(ref, dict) else None
        if not isinstance(count, int) or not 0 <= count <= limit:
            raise WeightsError(f"tensor '{self.name}' has a stream of {count!r} symbols (at most {limit} fit)")
        return codec.decode(ref, self.slice(ref))


def _decode_tensor(entry: dict[str, Any], body: bytes, name: str) -> tuple[np.ndarray, np.ndarray | None]:
    """``(weights, mask or None)`` of one tensor."""
    shape = _shape(entry, name)
    size = int(np.prod(shape, dtype=np.int64))
    reader = _Reader(body, name)
    positions = None
    if "positions" in entry:
        ref = entry["positions"]
        positions = absolute_positions(reader.stream(ref, size).astype(np.int64), ref["bits"])
        if len(positions) and (positions[-1] >= size):
            raise WeightsError(f"tensor '{name}' has sparse positions beyond its {size} entries")
    count = size if positions is None else len(positions)
    found = entry.get("values")
    values: dict[str, Any] = found if isinstance(found, dict) else {}
    kind = values.get("kind")
    if kind == "float32":
        flat = reader.blob(values["data"])
    elif kind == "codebook":
        codebook, indices = reader.blob(values["codebook"]), reader.stream(values["indices"], count)
        if len(indices) and indices.max() >= len(codebook):
            raise WeightsError(f"tensor '{name}' indexes past its codebook")
        flat = codebook[indices]
    elif kind == "int8":
        scales, codes, axis = reader.blob(values["scales"]), reader.stream(values["codes"], count), values.get("axis")
        if not isinstance(axis, int) or not 0 <= axis < max(len(shape), 1) or len(scales) != (shape or (1,))[axis]:
            raise WeightsError(f"tensor '{name}' has int8 scales that do not fit its shape")
        where = np.arange(size) if positions is None else positions
        if len(codes) != len(where):
            raise WeightsError(f"tensor '{name}' holds {len(codes)} int8 codes for {len(where)} entries")
        channel = (where // int(np.prod(shape[axis + 1 :], dtype=np.int64))) % len(scales)
        flat = (codes.astype(np.float32) - 128) * scales[channel]
    else:
        raise WeightsError(f"tensor '{name}' has an unknown value encoding ({kind!r})")
    if len(flat) != count:
        raise WeightsError(f"tensor '{name}' holds {len(flat)} values for {count} entries")
    if not np.isfinite(flat).all():
        raise WeightsError(f"tensor '{name}' holds NaN or infinity")
    out = np.zeros(size, np.float32)
    mask = None
    if positions is None:
        out[:] = flat
    else:
        out[positions] = flat
        mask = np.zeros(size, np.float32)
        mask[positions] = 1
        mask = mask.reshape(shape)
    return out.reshape(shape), mask


def read(
    path: str | os.PathLike[str],
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], dict[str, str]]:
    """``(weights, masks, metadata)`` of a compressed model file; masks for sparse tensors."""
    checked = _check(path)
    with open(checked, "rb") as f:
        header = _read_prefix(f, str(checked))
        expected = header.get("payload_bytes")
        if not isinstance(expected, int) or expected < 0 or expected > os.fstat(f.fileno()).st_size:
            raise WeightsError(f"'{checked}' is cut short (its header promises more than the file holds)")
        body = f.read(expected + 1)
    if len(body) != expected:
        raise WeightsError(f"'{checked}' is cut short or has trailing bytes ({len(body)} of {expected} payload bytes)")
    if hashlib.sha256(body).hexdigest() != header.get("payload_sha256"):
        raise WeightsError(f"'{checked}' is corrupt: its payload does not match its checksum")
    weights, masks = {}, {}
    for name, entry in header["tensors"].items():
        try:
            weights[name], mask = _decode_tensor(entry, body, name)
        except (KeyError, TypeError, AttributeError, ValueError, IndexError) as exc:
            raise WeightsError(f"'{checked}': tensor '{name}' is malformed ({type(exc).__name__})") from None
        if mask is not None:
            masks[name] = mask
    metadata = {str(k): str(v) for k, v in header["metadata"].items()}
    return weights, masks, {**metadata, "format": FORMAT, "spec": header["spec"]}
