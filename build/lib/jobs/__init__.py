"""Thin engine adapters, one per stage: Spark mining, img2dataset download, Dask attack, evaluation."""
