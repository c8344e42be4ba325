"""Bit packing, canonical Huffman coding and zstd for the streams of a compressed model file.

Every stream is a sequence of small unsigned symbols (codebook indices, sparse-index gaps,
int8 codes) and is stored whichever way is smallest: ``packed`` (each symbol at its bit width),
``huffman`` (a canonical Huffman code: only the code lengths are stored) or ``zstd`` (the packed
bytes through Zstandard). :func:`encode` measures all three.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable
from typing import Any

import numpy as np

from ..errors import WeightsError

MAX_CODE_LENGTH = 16  # longer Huffman codes are not used: the stream is packed or zstd instead
CODERS = ("packed", "huffman", "zstd")


def pack(symbols: np.ndarray, bits: int) -> bytes:
    """``symbols`` (each < 2**bits) as one big-endian bit string, ``bits`` bits each."""
    symbols = np.asarray(symbols, np.uint32)
    shifts = np.arange(bits - 1, -1, -1, dtype=np.uint32)
    return np.packbits(((symbols[:, None] >> shifts) & 1).astype(np.uint8)).tobytes()


def unpack(data: bytes, bits: int, count: int) -> np.ndarray:
    """The ``count`` symbols of ``bits`` bits each packed in ``data``."""
    if len(data) * 8 < bits * count:
        raise WeightsError(f"a packed stream is cut short ({len(data)} bytes for {count} symbols of {bits} bits)")
    flat = np.unpackbits(np.frombuffer(data, np.uint8), count=bits * count).reshape(count, bits)
    return flat.astype(np.uint32) @ (np.uint32(1) << np.arange(bits - 1, -1, -1, dtype=np.uint32))


# -- canonical Huffman ---------------------------------------------------------------------
def code_lengths(symbols: np.ndarray, alphabet: int) -> np.ndarray:
    """Huffman code lengths for each symbol of ``range(alphabet)`` (0 for absent symbols)."""
    counts = np.bincount(symbols, minlength=alphabet)
    present = np.flatnonzero(counts)
    lengths = np.zeros(alphabet, np.int64)
    if len(present) == 1:
        lengths[present] = 1
        return lengths
    heap = [(int(counts[s]), i, [int(s)]) for i, s in enumerate(present)]
    heapq.heapify(heap)
    tie = len(heap)
    while len(heap) > 1:
        c1, _, s1 = heapq.heappop(heap)
        c2, _, s2 = heapq.heappop(heap)
        lengths[s1 + s2] += 1
        heapq.heappush(heap, (c1 + c2, tie, s1 + s2))
        tie += 1
    return lengths


def canonical_codes(lengths: np.ndarray) -> np.ndarray:
    """The canonical code of each symbol from its length (shorter first, then by symbol)."""
    codes = np.zeros(len(lengths), np.int64)
    code, previous = 0, 0
    for s in sorted(np.flatnonzero(lengths), key=lambda s: (lengths[s], s)):
        code <<= int(lengths[s]) - previous
        codes[s], previous = code, int(lengths[s])
        code += 1
    return codes


def huffman_encode(symbols: np.ndarray, lengths: np.ndarray) -> bytes:
    codes = canonical_codes(lengths)
    sizes = lengths[symbols]
    total = int(sizes.sum())
    owner = np.repeat(np.arange(len(symbols)), sizes)
    place = np.arange(total) - np.repeat(np.cumsum(sizes) - sizes, sizes)
    bits = (codes[symbols][owner] >> (sizes[owner] - 1 - place)) & 1
    return np.packbits(bits.astype(np.uint8)).tobytes()


def huffman_decode(data: bytes, lengths: np.ndarray, count: int) -> np.ndarray:
    """Decode ``count`` symbols; a table indexed by the next ``max(lengths)`` bits gives each
    symbol and its length."""
    if count == 0:
        return np.zeros(0, np.uint32)
    width = int(lengths.max())
    if width < 1 or width > MAX_CODE_LENGTH:
        raise WeightsError(f"a Huffman table has code lengths up to {width} (at most {MAX_CODE_LENGTH})")
    codes = canonical_codes(lengths)
    if sum(2.0 ** -int(n) for n in lengths[lengths > 0]) > 1:
        raise WeightsError("a Huffman table is not a prefix code")
    table_symbol = np.zeros(1 << width, np.int64)
    table_length = np.zeros(1 << width, np.int64)
    for s in np.flatnonzero(lengths):
        first = int(codes[s]) << (width - int(lengths[s]))
        table_symbol[first : first + (1 << (width - int(lengths[s])))] = s
        table_length[first : first + (1 << (width - int(lengths[s])))] = lengths[s]
    bits = np.unpackbits(np.frombuffer(data, np.uint8))
    bits = np.concatenate([bits, np.zeros(width, np.uint8)])
    windows = np.zeros(len(bits) - width, np.int64)
    for k in range(width):  # the value of the `width` bits starting at each position
        windows = (windows << 1) | bits[k : k + len(windows)]
    window, symbol_of, length_of = windows.tolist(), table_symbol.tolist(), table_length.tolist()
    out, position, end = [0] * count, 0, len(bits) - width
    for i in range(count):
        if position >= end:
            raise WeightsError(f"a Huffman stream ends after {i} of {count} symbols")
        w = window[position]
        if length_of[w] == 0:
            raise WeightsError("a Huffman stream holds a bit pattern that is no code")
        out[i] = symbol_of[w]
        position += length_of[w]
    return np.asarray(out, np.uint32)


# -- choosing the smallest ---------------------------------------------------------------
def _zstd() -> tuple[Callable[[bytes], bytes], Callable[[bytes, int], bytes]]:
    import zstandard

    def compress(data: bytes) -> bytes:
        return zstandard.ZstdCompressor(level=19).compress(data)

    def decompress(data: bytes, size: int) -> bytes:
        try:
            declared = zstandard.frame_content_size(data)
            if declared != size:  # checked before anything is allocated
                raise WeightsError(f"a zstd stream holds {declared} bytes where {size} are expected")
            return zstandard.ZstdDecompressor().decompress(data, max_output_size=size)
        except zstandard.ZstdError as exc:
            raise WeightsError(f"a zstd stream is corrupt ({exc})") from None

    return compress, decompress


def encode(symbols: np.ndarray, bits: int) -> tuple[dict[str, Any], bytes, dict[str, int]]:
    """The smallest encoding of ``symbols`` (each < 2**bits): ``(description, data, sizes)``
    where ``sizes`` gives the bytes each coder needed (for the report)."""
    symbols = np.asarray(symbols, np.int64)
    packed = pack(symbols, bits)
    options: dict[str, tuple[dict[str, Any], bytes]] = {"packed": ({}, packed)}
    if len(symbols):
        lengths = code_lengths(symbols, 1 << bits)
        if lengths.max() <= MAX_CODE_LENGTH:
            table = pack(lengths, 5)  # code lengths fit in 5 bits
            options["huffman"] = ({"table_bytes": len(table)}, table + huffman_encode(symbols, lengths))
        options["zstd"] = ({}, _zstd()[0](packed))
    sizes = {name: len(data) for name, (_, data) in options.items()}
    coder = min(options, key=lambda name: (sizes[name], CODERS.index(name)))
    description, data = options[coder]
    return {"coder": coder, "bits": bits, "count": len(symbols), **description}, data, sizes


def decode(description: dict[str, Any], data: bytes) -> np.ndarray:
    """The symbols of a stream written by :func:`encode`."""
    coder, bits, count = description.get("coder"), description.get("bits"), description.get("count")
    if coder not in CODERS or not isinstance(bits, int) or not 1 <= bits <= 16:
        raise WeightsError(f"a stream has an unknown coding ({coder!r}, {bits!r} bits)")
    if not isinstance(count, int) or count < 0:
        raise WeightsError(f"a stream has an invalid symbol count ({count!r})")
    if coder == "packed":
        return unpack(data, bits, count)
    if coder == "zstd":
        return unpack(_zstd()[1](data, (bits * count + 7) // 8), bits, count)
    table_bytes = description.get("table_bytes")
    if not isinstance(table_bytes, int) or table_bytes != (5 * (1 << bits) + 7) // 8 or table_bytes > len(data):
        raise WeightsError("a Huffman stream has an invalid table")
    lengths = unpack(data[:table_bytes], 5, 1 << bits).astype(np.int64)
    return huffman_decode(data[table_bytes:], lengths, count)
