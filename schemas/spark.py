"""Spark types derived from the Arrow schemas (pyspark imported lazily: only the Spark jobs use this)."""

from __future__ import annotations

import pyarrow as pa


def to_spark_type(t: pa.DataType):
    from pyspark.sql import types as T

    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return T.StringType()
    if pa.types.is_int64(t):
        return T.LongType()
    if pa.types.is_int32(t):
        return T.IntegerType()
    if pa.types.is_int16(t):
        return T.ShortType()
    if pa.types.is_float64(t):
        return T.DoubleType()
    if pa.types.is_float32(t):
        return T.FloatType()
    if pa.types.is_boolean(t):
        return T.BooleanType()
    if pa.types.is_list(t):
        return T.ArrayType(to_spark_type(t.value_type))
    raise TypeError(f"no Spark type for Arrow type {t}")


def to_spark_schema(schema: pa.Schema):
    from pyspark.sql import types as T

    return T.StructType([T.StructField(f.name, to_spark_type(f.type), f.nullable) for f in schema])
