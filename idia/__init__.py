"""idia: the library behind the identity-inference audit (pure logic; imports neither Spark nor Dask)."""

import time as _time

__version__ = "0.1.0"
#: When this process imported idia (wall clock): start-up figures (e.g. mining's first_task_s) count from here.
IMPORTED_AT = _time.time()
