"""Validate tables and files against the schemas in `schemas`, with errors that name file and column."""

from __future__ import annotations

import pyarrow as pa


class SchemaError(ValueError):
    """A table or file does not fit its schema. The message names the file and the column."""


def _compatible(actual: pa.DataType, expected: pa.DataType) -> bool:
    if actual == expected:
        return True
    # string/large_string and int widths that cast losslessly are accepted; the caller casts.
    if pa.types.is_string(expected) and (pa.types.is_string(actual) or pa.types.is_large_string(actual)):
        return True
    if pa.types.is_integer(expected) and pa.types.is_integer(actual):
        return True
    if pa.types.is_floating(expected) and (pa.types.is_floating(actual) or pa.types.is_integer(actual)):
        return True
    if pa.types.is_null(actual):
        return True
    return False


def check_schema(actual: pa.Schema, expected: pa.Schema, where: str, columns: list[str] | None = None) -> None:
    """Raise SchemaError if `actual` lacks a column of `expected` (or of `columns`) or has an incompatible type."""
    names = columns if columns is not None else expected.names
    for name in names:
        exp = expected.field(name)
        idx = actual.get_field_index(name)
        if idx < 0:
            raise SchemaError(
                f"{where}: missing column '{name}' (expected {exp.type}); columns present: {', '.join(actual.names)}"
            )
        got = actual.field(idx).type
        if not _compatible(got, exp.type):
            raise SchemaError(f"{where}: column '{name}' has type {got}, expected {exp.type}")


def conform(table: pa.Table, expected: pa.Schema, where: str) -> pa.Table:
    """Check, then select and cast `table` to exactly `expected` (column order and types)."""
    check_schema(table.schema, expected, where)
    arrays = []
    for f in expected:
        col = table.column(f.name)
        if col.type != f.type:
            try:
                col = col.cast(f.type)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
                raise SchemaError(f"{where}: column '{f.name}' cannot be cast to {f.type}: {exc}") from None
        if not f.nullable and col.null_count:
            raise SchemaError(f"{where}: column '{f.name}' has {col.null_count} null value(s), nulls not allowed")
        arrays.append(col)
    return pa.Table.from_arrays(arrays, schema=expected)


def check_mapping(schema: pa.Schema, mapping: dict[str, str | None], expected: pa.Schema, where: str) -> list[int]:
    """Raise SchemaError unless a source layout (`schema`) holds every column `mapping` names for `expected`, each of
    a compatible type; returns each expected column's index in `schema` (-1: absent from the mapping, null-filled)."""
    found = []
    for f in expected:
        src = mapping.get(f.name)
        if src is None:
            found.append(-1)
            continue
        idx = schema.get_field_index(src)
        if idx < 0:
            raise SchemaError(
                f"{where}: missing column '{src}' (mapped to '{f.name}'); columns present: {', '.join(schema.names)}"
            )
        if not _compatible(schema.field(idx).type, f.type):
            raise SchemaError(f"{where}: column '{src}' has type {schema.field(idx).type}, expected {f.type}")
        found.append(idx)
    return found


def map_columns(table: pa.Table, mapping: dict[str, str | None], expected: pa.Schema, where: str) -> pa.Table:
    """Rename a source layout to the canonical one via an explicit mapping, fill absent columns with nulls, cast."""
    arrays = []
    for f, idx in zip(expected, check_mapping(table.schema, mapping, expected, where)):
        if idx < 0:
            arrays.append(pa.nulls(table.num_rows, f.type))
            continue
        col = table.column(idx)
        if col.type != f.type:
            col = col.cast(f.type)
        arrays.append(col)
    return pa.Table.from_arrays(arrays, schema=expected)
