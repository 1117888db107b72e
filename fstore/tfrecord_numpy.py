"""The numpy TFRecord encoder: ``tf.train.Example`` rows of a whole batch at once, the
protobuf wire format and the TFRecord framing (length, masked CRC32C) built with numpy,
row bytes laid out in a padded matrix.

The reference for :mod:`fstore._tfrecord_native` (the C encoder :mod:`fstore.tfrecord`
uses when it is built) and its fallback: both produce the same bytes. The type mapping
is described in :mod:`fstore.tfrecord`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from fstore.errors import InvalidInput

MAX_POSITION_GROUPS = 32  # beyond this many distinct row positions, scatter byte by byte

Encoded = tuple[np.ndarray, np.ndarray]  # (uint8 matrix rows x width, int64 lengths per row)


# --- CRC32C (Castagnoli), as TFRecord frames use it --------------------------------------
def _crc_tables() -> tuple[np.ndarray, np.ndarray]:
    """The byte table and a 16-bit table (two bytes per step) of reflected CRC32C."""
    table = np.arange(256, dtype=np.uint32)
    for _ in range(8):
        table = np.where(table & 1, (table >> 1) ^ np.uint32(0x82F63B78), table >> 1).astype(np.uint32)
    x = np.arange(65536, dtype=np.uint32)
    first = table[x & 0xFF]
    wide = table[(first & 0xFF) ^ (x >> 8)] ^ (first >> 8)
    return table, wide.astype(np.uint32)


_CRC8, _CRC16 = _crc_tables()
_MASK_DELTA = np.uint32(0xA282EAD8)


def crc32c_rows(matrix: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """CRC32C of each row's first ``lengths[i]`` bytes of a uint8 matrix, all rows at once.

    Rows are ordered longest first so that the rows still running form a prefix;
    two bytes are consumed per step through a 64 Ki-entry table.

    >>> hex(int(crc32c_rows(np.frombuffer(b"123456789", np.uint8)[None, :], np.array([9]))[0]))
    '0xe3069283'
    """
    n = len(lengths)
    crc = np.full(n, 0xFFFFFFFF, dtype=np.uint32)
    if n == 0:
        return crc
    order = np.argsort(-lengths, kind="stable")
    ordered = lengths[order]
    width = int(ordered[0]) + (int(ordered[0]) & 1)
    rows = np.zeros((n, max(width, 2)), dtype=np.uint8)
    rows[:, :min(width, matrix.shape[1])] = matrix[order, :width]
    words = np.asfortranarray(rows.view("<u2"))
    # rows with two more bytes at each step: a prefix of the longest-first order
    active = n - np.searchsorted(ordered[::-1], 2 * np.arange(width // 2) + 1, side="right")
    index = np.empty(n, dtype=np.uint32)
    looked_up = np.empty(n, dtype=np.uint32)
    for step in range(width // 2):
        a = int(active[step])
        c, i, t = crc[:a], index[:a], looked_up[:a]
        np.bitwise_xor(c, words[:a, step], out=i)
        np.bitwise_and(i, np.uint32(0xFFFF), out=i)
        np.take(_CRC16, i, out=t)
        np.right_shift(c, np.uint32(16), out=c)
        np.bitwise_xor(c, t, out=c)
    odd = np.flatnonzero(ordered & 1)  # one last byte
    if len(odd):
        c = crc[odd]
        last = rows[odd, ordered[odd] - 1]
        crc[odd] = _CRC8[(c ^ last) & np.uint32(0xFF)] ^ (c >> np.uint32(8))
    crc ^= np.uint32(0xFFFFFFFF)
    result = np.empty_like(crc)
    result[order] = crc
    return result


def _masked(crc: np.ndarray) -> np.ndarray:
    return (((crc >> np.uint32(15)) | (crc << np.uint32(17))) + _MASK_DELTA).astype(np.uint32)


# --- building rows of bytes ---------------------------------------------------------------
def _const(data: bytes, n: int) -> Encoded:
    return np.tile(np.frombuffer(data, np.uint8), (n, 1)), np.full(n, len(data), dtype=np.int64)


def _varint(values: np.ndarray) -> Encoded:
    """Protobuf varints of uint64 values (negative int64 as two's complement, 10 bytes)."""
    u = values.astype(np.uint64, copy=False)
    n = len(u)
    lengths = np.ones(n, dtype=np.int64)
    for k in range(1, 10):
        more = (u >> np.uint64(7 * k)) != 0
        if not more.any():
            break
        lengths += more
    width = int(lengths.max()) if n else 1
    shifts = np.arange(width, dtype=np.uint64) * np.uint64(7)
    matrix = ((u[:, None] >> shifts) & np.uint64(0x7F)).astype(np.uint8)
    if width > 1:
        matrix |= (np.arange(width)[None, :] < (lengths[:, None] - 1)).astype(np.uint8) << 7
    return matrix, lengths


def _join(parts: Sequence[Encoded]) -> Encoded:
    """Concatenate, row by row, several (matrix, lengths) parts into one.

    Parts are written left to right into a zero matrix as wide as all parts
    together; bytes past a row's length spill into the place of the next part,
    which overwrites them (or into the padding, which callers ignore).
    """
    n = len(parts[0][1])
    width = sum(m.shape[1] for m, _ in parts)
    out = np.zeros((n, width), dtype=np.uint8)
    position = np.zeros(n, dtype=np.int64)
    # rows sharing a position, while there are few distinct positions (None: too many)
    groups: list[tuple[int, np.ndarray | slice]] | None = [(0, slice(None))]
    for matrix, lengths in parts:
        w = matrix.shape[1]
        if w:
            if groups is not None:  # slice copies per group of rows
                for at, rows in groups:
                    out[rows, at:at + w] = matrix[rows]
            else:
                flat = out.reshape(-1)
                flat[(np.arange(n, dtype=np.int64) * width + position)[:, None] + np.arange(w)] = matrix
        position += lengths
        if groups is not None and n and lengths.min() == lengths.max():
            step = int(lengths[0])
            groups = [(at + step, rows) for at, rows in groups]
        elif n:
            distinct, _ = _distinct(position)
            groups = [(int(at), np.flatnonzero(position == at)) for at in distinct] \
                if len(distinct) <= MAX_POSITION_GROUPS else None
    return out, position


def _distinct(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(sorted distinct values, index of each value in them) of small non-negative ints, in O(n)."""
    low = int(values.min())
    counts = np.bincount(values - low)
    distinct = np.flatnonzero(counts)
    lookup = np.zeros(len(counts), dtype=np.int64)
    lookup[distinct] = np.arange(len(distinct))
    return distinct + low, lookup[values - low]


def _delimited(tag: int, payload: Encoded) -> Encoded:
    """A length-delimited protobuf field: tag byte, varint length, payload."""
    n = len(payload[1])
    return _join([_const(bytes([tag]), n), _varint(payload[1]), payload])


def _prefixes(lengths: np.ndarray, wrap: Any) -> Encoded:
    """Per row, the bytes ``wrap`` puts before a payload of that length (computed once per
    distinct length: every wrapper used here is tag + length + payload)."""
    distinct, inverse = _distinct(lengths) if len(lengths) else (lengths, lengths)
    matrix, total = wrap((np.zeros((len(distinct), 0), dtype=np.uint8), distinct))
    return matrix[inverse], (total - distinct)[inverse]


def _pad(flat: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Rows of a flat byte array (row i has lengths[i] bytes) as a zero-padded matrix."""
    width = int(lengths.max()) if len(lengths) else 0
    matrix = np.zeros((len(lengths), width), dtype=np.uint8)
    matrix[np.arange(width)[None, :] < lengths[:, None]] = flat
    return matrix


def _row_sums(values: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Sum of ``values`` over each row's slice [offsets[i], offsets[i+1])."""
    cumulative = np.concatenate([[0], np.cumsum(values, dtype=np.int64)])
    return cumulative[offsets[1:]] - cumulative[offsets[:-1]]


def _as_int64(array: pa.Array, name: str) -> np.ndarray:
    """Integer-like values as int64 (times in their Arrow unit, booleans 0/1); nulls as 0."""
    t = array.type
    if pa.types.is_boolean(t):
        array = pc.cast(array, pa.int8())
    elif pa.types.is_temporal(t):
        array = array.view(pa.int64() if t.bit_width == 64 else pa.int32())
    elif t == pa.uint64():
        top = pc.max(array).as_py()
        if top is not None and top > np.iinfo(np.int64).max:
            raise InvalidInput(f"column {name!r} holds values too large for a TFRecord int64")
    return array.fill_null(0).to_numpy(zero_copy_only=False).astype(np.int64, copy=False)


def _floats(array: pa.Array) -> np.ndarray:
    """Numbers as float64 with NULL as NaN."""
    return pc.cast(array, pa.float64()).fill_null(np.nan).to_numpy(zero_copy_only=False)


def _varint_bytes(value: int) -> bytes:
    matrix, lengths = _varint(np.array([value], dtype=np.uint64))
    return matrix[0, :lengths[0]].tobytes()


def _list_parts(array: pa.Array) -> tuple[pa.Array, np.ndarray]:
    """(flat values, offsets from 0) of a (large) list array; null lists have no values."""
    offsets = array.offsets.to_numpy().astype(np.int64)
    base = int(offsets[0])
    return array.values.slice(base, int(offsets[-1]) - base), offsets - base


def _encode_column(name: str, kind: str, value_type: pa.DataType | None, array: pa.Array,
                   stats: dict[str, Any]) -> list[Encoded]:
    """The Features map entry ``name -> Feature`` of every row, as (prefix, payload) parts
    (length 0 where the value is omitted)."""
    n = len(array)
    if pa.types.is_dictionary(array.type):
        array = array.dictionary_decode()
    valid = np.ones(n, dtype=bool) if array.null_count == 0 else \
        array.is_valid().to_numpy(zero_copy_only=False)
    stats["null_count"] += n - int(valid.sum())
    omit = ~valid
    if value_type is None and kind == "float":  # scalar float: always 4 bytes, NULL as NaN
        values = _floats(array).astype("<f4").view(np.uint8).reshape(n, 4)
        packed = (values, np.full(n, 4, dtype=np.int64))
        omit[:] = False
    elif value_type is None and kind == "int64":
        packed = _varint(_as_int64(array, name))
    elif value_type is None:  # bytes: one element of the repeated field
        if pa.types.is_large_string(array.type) or pa.types.is_large_binary(array.type):
            array = pc.cast(array, pa.binary())
        offsets = np.frombuffer(array.buffers()[1], dtype=np.int32)[array.offset:array.offset + n + 1]
        offsets = offsets.astype(np.int64)
        data = array.buffers()[2]
        flat = np.frombuffer(data, dtype=np.uint8)[offsets[0]:offsets[-1]] if data is not None \
            else np.zeros(0, dtype=np.uint8)
        lengths = np.diff(offsets)
        packed = (_pad(flat, lengths), lengths)
    elif kind == "float" and pa.types.is_fixed_size_list(array.type):  # a vector: NULL as NaNs
        size = array.type.list_size
        values = _floats(array.values.slice(array.offset * size, n * size)).reshape(n, size).copy()
        values[~valid] = np.nan
        if n and valid.any():
            stats["min_length"] = min(stats["min_length"], size)
            stats["max_length"] = max(stats["max_length"], size)
        packed = (values.astype("<f4").view(np.uint8).reshape(n, 4 * size),
                  np.full(n, 4 * size, dtype=np.int64))
        omit[:] = False
    else:  # a list of numbers of any length
        if pa.types.is_fixed_size_list(array.type):
            array = pc.cast(array, pa.list_(array.type.value_type))
        flat, offsets = _list_parts(array)
        counts = np.diff(offsets)
        if valid.any():
            stats["min_length"] = min(stats["min_length"], int(counts[valid].min()))
            stats["max_length"] = max(stats["max_length"], int(counts[valid].max()))
        if kind == "float":
            lengths = counts * 4
            packed = (_pad(_floats(flat).astype("<f4").view(np.uint8), lengths), lengths)
        else:
            matrix, element_lengths = _varint(_as_int64(flat, name))
            mask = np.arange(matrix.shape[1])[None, :] < element_lengths[:, None]
            row_lengths = _row_sums(element_lengths, offsets)
            packed = (_pad(matrix[mask], row_lengths), row_lengths)
    tag = {"bytes": 0x0A, "float": 0x12, "int64": 0x1A}[kind]
    key = name.encode()
    key_field = b"\x0a" + _varint_bytes(len(key)) + key

    def entry(inner: Encoded) -> Encoded:  # map entry {key, Feature{tag: List{0x0a: inner}}}
        m = len(inner[1])
        feature = _delimited(0x12, _delimited(tag, _delimited(0x0A, inner)))
        return _delimited(0x0A, _join([_const(key_field, m), feature]))

    prefix, prefix_lengths = _prefixes(packed[1], entry)
    lengths = packed[1]
    if omit.any():
        prefix_lengths = np.where(omit, 0, prefix_lengths)
        lengths = np.where(omit, 0, lengths)
    return [(prefix, prefix_lengths), (packed[0], lengths)]


def _example_prefix(inner: Encoded) -> Encoded:
    """Frame header (uint64 length, its masked CRC) and the Example's features tag + length."""
    example = _delimited(0x0A, inner)
    n = len(example[1])
    header = example[1].astype("<u8").view(np.uint8).reshape(n, 8)
    header_crc = _masked(crc32c_rows(header, np.full(n, 8, dtype=np.int64)))
    return _join([(header, np.full(n, 8, dtype=np.int64)),
                  (header_crc.astype("<u4").view(np.uint8).reshape(n, 4), np.full(n, 4, dtype=np.int64)),
                  example])


def encode_records(batch: pa.RecordBatch, kinds: dict[str, tuple[str, pa.DataType | None]],
                   stats: dict[str, dict[str, Any]]) -> bytes:
    """The TFRecord-framed ``tf.train.Example`` bytes of every row of ``batch``."""
    if not kinds:
        raise InvalidInput("a TFRecord export needs at least one column")
    n = batch.num_rows
    parts: list[Encoded] = []
    for name in kinds:
        parts += _encode_column(name, *kinds[name], batch.column(name), stats[name])
    features_length = np.sum([lengths for _, lengths in parts], axis=0)
    prefix = _prefixes(features_length, _example_prefix)
    matrix, lengths = _join([prefix, *parts, (np.zeros((n, 4), dtype=np.uint8), np.full(n, 4, dtype=np.int64))])
    example_length = lengths - 16
    data_crc = _masked(crc32c_rows(matrix[:, 12:], example_length))
    flat = matrix.reshape(-1)
    flat[(np.arange(n, dtype=np.int64) * matrix.shape[1] + 12 + example_length)[:, None] + np.arange(4)] = \
        data_crc.astype("<u4").view(np.uint8).reshape(n, 4)
    return matrix[np.arange(matrix.shape[1])[None, :] < lengths[:, None]].tobytes()
