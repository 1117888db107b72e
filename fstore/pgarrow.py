"""PostgreSQL types in Arrow, both ways: the one room that knows them.

* :data:`ARROW_TYPES`: the PostgreSQL types whose values Arrow holds as they are
  (binary COPY writes them, reads give them back), by their ``format_type`` name;
  :data:`READ_AS` the few read through a cast (``vector``, ``numeric``, ``uuid``);
  :func:`arrow_type` and :func:`select_cast` for any stored type;
* :func:`pg_type_for`: the column type a feature of an Arrow type is stored as;
* :func:`normalise_batch`: what ADBC hands over as opaque extension types
  (``vector``, ``numeric``, ...) turned into plain Arrow types, batch by batch.

Example::

    arrow_type("public.vector(3)")                 # list<item: float>
    pg_type_for(pa.field("amount", pa.float64()))  # 'double precision'
    for batch in normalised(cursor.fetch_record_batch()):
        batch.schema.field("embedding").type       # fixed_size_list<item: float>[3]
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from psycopg import sql

from fstore.errors import FstoreError, InvalidInput

#: PostgreSQL types (``format_type``'s names, without modifiers) whose values Arrow holds as is
ARROW_TYPES: dict[str, pa.DataType] = {
    "smallint": pa.int16(), "integer": pa.int32(), "bigint": pa.int64(), "real": pa.float32(),
    "double precision": pa.float64(), "boolean": pa.bool_(), "text": pa.string(),
    "character varying": pa.string(), "character": pa.string(), "bytea": pa.binary(), "date": pa.date32(),
    "timestamp with time zone": pa.timestamp("us", tz="UTC"), "timestamp without time zone": pa.timestamp("us"),
}
#: types read through a cast (None: as they are), and the Arrow type of what comes back
READ_AS: dict[str, tuple[str | None, pa.DataType]] = {
    "vector": ("float4[]", pa.list_(pa.float32())), "numeric": ("float8", pa.float64()),
    "uuid": ("text", pa.string()), "interval": (None, pa.duration("us")),
}
INT_BOUNDS: dict[str, tuple[int, int]] = {"smallint": (-(2**15), 2**15 - 1), "integer": (-(2**31), 2**31 - 1),
                                          "bigint": (-(2**63), 2**63 - 1)}
# a stored type as format_type prints it: a name, an optional modifier, an optional []
SAFE_TYPE = re.compile(r'[a-z_][a-z0-9_ ."]*(\(\d+(,\s*\d+)?\))?(\[\])?')
_EXTENSION_SCHEMA = re.compile(r'^(?:"?public"?\.)')


def base_type(pg_type: str) -> str:
    """A stored type without schema, modifier and ``[]``.

    >>> base_type("public.vector(3)"), base_type("numeric(12,2)"), base_type("character varying(8)[]")
    ('vector', 'numeric', 'character varying')
    """
    text = _EXTENSION_SCHEMA.sub("", pg_type.strip().lower()).removesuffix("[]")
    return text.split("(")[0].strip()


def is_array(pg_type: str) -> bool:
    """True for an array type (``bigint[]``)."""
    return pg_type.strip().endswith("[]")


def dimension(pg_type: str) -> int | None:
    """The declared dimension of ``vector(n)`` (None for any other type, or a vector without one)."""
    match = re.fullmatch(r'(?:"?public"?\.)?vector\((\d+)\)', pg_type.strip().lower())
    return int(match.group(1)) if match else None


def arrow_type(pg_type: str) -> pa.DataType:
    """The Arrow type values of this stored type are read as (text for types without one)."""
    base = base_type(pg_type)
    if is_array(pg_type):
        return pa.list_(ARROW_TYPES[base]) if base in ARROW_TYPES else pa.string()
    if base in ARROW_TYPES:
        return ARROW_TYPES[base]
    return READ_AS[base][1] if base in READ_AS else pa.string()


def select_cast(pg_type: str) -> str | None:
    """The cast a select list applies so that a driver returns what :func:`arrow_type` says."""
    base = base_type(pg_type)
    if is_array(pg_type):
        return None if base in ARROW_TYPES else "text"
    if base in ARROW_TYPES:
        return None
    return READ_AS[base][0] if base in READ_AS else "text"


def type_sql(pg_type: str) -> sql.SQL:
    """A stored type (from the catalog) as SQL, after checking it has the shape of a type name."""
    if not SAFE_TYPE.fullmatch(pg_type):
        raise FstoreError(f"unexpected stored type {pg_type!r}")
    return sql.SQL(pg_type)


def is_number(arrow_type_: pa.DataType) -> bool:
    """Integers, floats and decimals."""
    return pa.types.is_integer(arrow_type_) or pa.types.is_floating(arrow_type_) or pa.types.is_decimal(arrow_type_)


def is_list(arrow_type_: pa.DataType) -> bool:
    """Lists of any kind: variable, large and fixed-size."""
    return pa.types.is_list(arrow_type_) or pa.types.is_large_list(arrow_type_) \
        or pa.types.is_fixed_size_list(arrow_type_)


def pg_type_for(field: pa.Field) -> str:
    """The PostgreSQL column type a feature of this Arrow type is stored as.

    >>> pg_type_for(pa.field("amount", pa.float64()))
    'double precision'
    """
    t = field.type
    if pa.types.is_dictionary(t):
        t = t.value_type
    if pa.types.is_int64(t) or pa.types.is_uint32(t) or pa.types.is_uint64(t):
        return "bigint"
    if pa.types.is_int32(t) or pa.types.is_uint16(t):
        return "integer"
    if pa.types.is_int16(t) or pa.types.is_int8(t) or pa.types.is_uint8(t):
        return "smallint"
    if pa.types.is_float64(t):
        return "double precision"
    if pa.types.is_float32(t) or pa.types.is_float16(t):
        return "real"
    if pa.types.is_boolean(t):
        return "boolean"
    if pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t):
        return "text"
    if pa.types.is_binary(t) or pa.types.is_large_binary(t):
        return "bytea"
    if pa.types.is_timestamp(t):
        return "timestamptz"  # naive timestamps are UTC (DESIGN: one definition everywhere)
    if pa.types.is_date(t):
        return "date"
    if pa.types.is_decimal(t):
        return f"numeric({t.precision},{t.scale})"
    if pa.types.is_fixed_size_list(t) and is_number(t.value_type):
        return f"vector({t.list_size})"
    if (pa.types.is_list(t) or pa.types.is_large_list(t)) and is_number(t.value_type):
        return "vector"  # dimension fixed from the data by the caller
    raise InvalidInput(f"column {field.name!r} has Arrow type {t}, which fstore cannot store; "
                       "convert it to a number, string, boolean, timestamp, date or list of floats")


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
