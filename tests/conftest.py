"""Shared test settings. Fixtures that start services live in tests/support/ and are imported by the tests that use them."""

import os
import sys

# Set before anything imports pyspark / img2dataset / albumentations.
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
os.environ["PYSPARK_PYTHON"] = sys.executable
os.environ["PYSPARK_DRIVER_PYTHON"] = sys.executable
# Keep torch from oversubscribing the 2 cores while Spark/Dask workers run beside it.
os.environ.setdefault("OMP_NUM_THREADS", "2")

# Fixtures that start services (a Spark standalone cluster, a local Spark session), available to every test.
pytest_plugins = ["tests.support.spark_cluster", "tests.support.s3_server", "tests.support.slurm"]
