"""idia: the library behind the identity-inference audit (pure logic; imports neither Spark nor Dask)."""

__version__ = "0.1.0"
