"""PostgreSQL types in Arrow: what ADBC hands over as opaque extension types
(``vector``, ``numeric``, ...) turned into plain Arrow types, batch by batch.

Example::

    for batch in normalised(cursor.fetch_record_batch()):
        batch.schema.field("embedding").type      # fixed_size_list<item: float>[3]
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from fstore.errors import InvalidInput


def _opaque_name(arrow_type: pa.DataType) -> str | None:
    if isinstance(arrow_type, pa.BaseExtensionType) and arrow_type.extension_name == "arrow.opaque":
        return getattr(arrow_type, "type_name", None)
    return None


def _decode_vectors(array: pa.Array) -> pa.Array:
    """pgvector's binary form (int16 dim, int16 unused, float4 big-endian) as float32 lists."""
    storage = array.storage if isinstance(array, pa.ExtensionArray) else array
    n = len(storage)
    offsets = np.frombuffer(storage.buffers()[1], dtype=np.int32)[storage.offset:storage.offset + n + 1]
    offsets = offsets.astype(np.int64)
    raw = storage.buffers()[2]
    data = np.frombuffer(raw, dtype=np.uint8) if raw is not None else np.zeros(0, np.uint8)
    lengths = np.diff(offsets)
    valid = storage.is_valid().to_numpy(zero_copy_only=False)
    present = lengths[valid]
    if len(present) and (present == present[0]).all():
        size = (int(present[0]) - 4) // 4
        rows = data[offsets[0]:offsets[-1]].reshape(len(present), int(present[0]))[:, 4:]
        values = np.zeros((n, size), dtype=np.float32)
        values[valid] = rows.copy().view(">f4").astype(np.float32)
        return pa.FixedSizeListArray.from_arrays(pa.array(values.reshape(-1)), size,
                                                 mask=pa.array(~valid))
    items = [None if not ok else np.frombuffer(data[a + 4:b].tobytes(), ">f4").astype(np.float32)
             for ok, a, b in zip(valid, offsets[:-1], offsets[1:])]
    return pa.array(items, type=pa.list_(pa.float32()))


def _decode_numeric(array: pa.Array, field_: pa.Field) -> pa.Array:
    """PostgreSQL numeric (text) as decimal128(p, s) when the column declares them, else float64."""
    storage = array.storage if isinstance(array, pa.ExtensionArray) else array
    typmod = int((field_.metadata or {}).get(b"POSTGRESQL:typmod", b"-1"))
    if typmod >= 4:
        precision, scale = ((typmod - 4) >> 16) & 0xFFFF, (typmod - 4) & 0xFFFF
        if 0 < precision <= 38:
            try:
                return pc.cast(storage, pa.decimal128(precision, scale))
            except pa.ArrowInvalid:
                pass  # NaN or infinity in the column
    return pc.cast(storage, pa.float64())


def normalise_batch(batch: pa.RecordBatch) -> pa.RecordBatch:
    """Replace PostgreSQL types ADBC hands over as opaque (vector, numeric, ...) by Arrow types.

    ``vector`` becomes ``fixed_size_list<float32>[dim]`` (``list<float32>`` if dimensions
    differ), ``numeric(p, s)`` ``decimal128(p, s)``, an unconstrained ``numeric`` float64;
    other opaque types keep their storage (text or bytes).
    """
    columns, fields, changed = [], [], False
    for field_, column in zip(batch.schema, batch.columns):
        name = _opaque_name(field_.type)
        if name is not None:
            if name == "vector":
                column = _decode_vectors(column)
            elif name == "numeric":
                column = _decode_numeric(column, field_)
            else:
                column = column.storage
            field_ = pa.field(field_.name, column.type, nullable=True, metadata=field_.metadata)
            changed = True
        columns.append(column)
        fields.append(field_)
    if not changed:
        return batch
    return pa.RecordBatch.from_arrays(columns, schema=pa.schema(fields, metadata=batch.schema.metadata))


def normalised(reader: pa.RecordBatchReader | pa.Table) -> Iterator[pa.RecordBatch]:
    """The batches of a reader with :func:`normalise_batch` applied, all to the first one's schema."""
    if isinstance(reader, pa.Table):
        reader = reader.to_reader()
    schema: pa.Schema | None = None
    for batch in reader:
        batch = normalise_batch(batch)
        if schema is None:
            schema = batch.schema
        elif not batch.schema.equals(schema):
            try:
                batch = batch.cast(schema)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
                raise InvalidInput(f"rows change type mid-stream ({exc}): e.g. vectors of different "
                                   "dimensions in one column") from exc
        yield batch
