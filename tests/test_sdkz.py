"""The compressed file format and its coders: exact round trips, and any damage is one
WeightsError (no framework needed)."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sdk_core import WeightsError, zoo
from sdk_core.model import codec, sdkz
from sdk_core.model.weights import load_weights, read_header

SPEC = zoo.mlp(hidden=(16,))


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 12), st.lists(st.integers(0, 2**12 - 1), max_size=300))
def test_every_coder_round_trips(bits, values):
    symbols = np.array([v % (1 << bits) for v in values], np.int64)
    description, data, sizes = codec.encode(symbols, bits)
    assert description["coder"] in codec.CODERS and len(data) == min(sizes.values())
    assert codec.decode(description, data).tolist() == symbols.tolist()
    lengths = codec.code_lengths(symbols, 1 << bits) if len(symbols) else None
    if lengths is not None and lengths.max() <= codec.MAX_CODE_LENGTH:
        coded = codec.huffman_encode(symbols, lengths)
        assert codec.huffman_decode(coded, lengths, len(symbols)).tolist() == symbols.tolist()


def test_huffman_beats_packing_on_skewed_symbols():
    rng = np.random.default_rng(0)
    symbols = np.minimum(rng.geometric(0.5, 5000) - 1, 31)
    _, _, sizes = codec.encode(symbols, 5)
    assert sizes["huffman"] < 0.7 * sizes["packed"]


@settings(max_examples=60, deadline=None)
@given(st.integers(2, 8), st.sets(st.integers(0, 5000), max_size=200))
def test_relative_positions_round_trip(bits, positions):
    positions = np.array(sorted(positions), np.int64)
    symbols = sdkz.relative_positions(positions, bits)
    assert symbols.max(initial=0) < 1 << bits
    assert sdkz.absolute_positions(symbols, bits).tolist() == positions.tolist()


def _tensors(rng):
    w0 = rng.normal(size=(64, 16)).astype(np.float32)
    mask = rng.random(w0.shape) > 0.9
    book = np.array([-0.5, -0.1, 0.2, 0.7], np.float32)
    idx = rng.integers(0, 4, w0.shape)
    w2 = rng.normal(size=(16, 10)).astype(np.float32)
    codes = rng.integers(-127, 128, w2.shape)
    scales = rng.random(10).astype(np.float32) + 0.01
    tensors = {
        "0.weight": sdkz.Encoded(w0.shape, "codebook", np.flatnonzero(mask), codebook=book, symbols=idx[mask], bits=2),
        "0.bias": sdkz.Encoded((16,), "float32", values=rng.normal(size=16).astype(np.float32)),
        "2.weight": sdkz.Encoded(w2.shape, "int8", scales=scales, axis=1, symbols=(codes + 128).ravel()),
        "2.bias": sdkz.Encoded((10,), "float32", values=np.zeros(10, np.float32)),
    }
    expected = {
        "0.weight": np.where(mask, book[idx], 0).astype(np.float32),
        "0.bias": tensors["0.bias"].values,
        "2.weight": (codes * scales).astype(np.float32),
        "2.bias": np.zeros(10, np.float32),
    }
    return tensors, expected, mask


def test_write_and_read_back_exactly(tmp_path):
    tensors, expected, mask = _tensors(np.random.default_rng(1))
    path = tmp_path / "m.sdkz"
    written = sdkz.write(path, SPEC.to_json(), tensors, {"note": "x"})
    assert sum(written["tensors"].values()) + written["header_bytes"] == path.stat().st_size
    weights, masks, meta = sdkz.read(path)
    for name, value in expected.items():
        np.testing.assert_allclose(weights[name], value, rtol=1e-6, atol=0)
    assert list(masks) == ["0.weight"] and (masks["0.weight"] == mask).all()
    assert meta["note"] == "x" and meta["spec"] == SPEC.to_json()
    shapes, _ = read_header(path)
    assert shapes["0.weight"] == (64, 16)
    assert load_weights(path)[0].keys() == expected.keys()


def _saved(tmp_path):
    tensors, _, _ = _tensors(np.random.default_rng(2))
    path = tmp_path / "m.sdkz"
    sdkz.write(path, SPEC.to_json(), tensors)
    return path, path.read_bytes()


def test_damage_is_one_clean_error(tmp_path):
    _path, data = _saved(tmp_path)
    damaged = tmp_path / "bad.sdkz"
    cases = {
        "cut": data[: len(data) // 2],
        "cut header": data[:20],
        "flipped payload bit": data[:-5] + bytes([data[-5] ^ 1]) + data[-4:],
        "trailing bytes": data + b"x",
        "other version": data[:4] + b"\x07" + data[5:],
        "huge header": data[:8] + (2**31).to_bytes(4, "little") + data[12:],
        "garbage header": data[:12] + b"\x00" * 40 + data[52:],
    }
    for why, content in cases.items():
        damaged.write_bytes(content)
        with pytest.raises(WeightsError) as err:
            sdkz.read(damaged)
        assert "\n" not in str(err.value), why


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_random_corruption_never_escapes_as_another_error(tmp_path_factory, data):
    tmp = tmp_path_factory.mktemp("fuzz")
    path, original = _saved(tmp)
    content = bytearray(original)
    for _ in range(data.draw(st.integers(1, 4))):
        at = data.draw(st.integers(0, len(content) - 1))
        content[at] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(content)))
    path.write_bytes(bytes(content[:cut]))
    try:
        weights, _, _ = sdkz.read(path)
    except WeightsError:
        return
    assert all(np.isfinite(w).all() for w in weights.values())


def test_reading_never_writes(tmp_path):
    path, data = _saved(tmp_path)
    before = hashlib.sha256(data).hexdigest()
    sdkz.read(path)
    assert hashlib.sha256(path.read_bytes()).hexdigest() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.sdkz"]


def test_not_a_compressed_file(tmp_path):
    path = tmp_path / "x.sdkz"
    path.write_bytes(b"PK\x03\x04 not ours")
    with pytest.raises(WeightsError, match="no SDKZ signature"):
        sdkz.read(path)
    assert not sdkz.is_sdkz(path) and not sdkz.is_sdkz(tmp_path / "missing")
