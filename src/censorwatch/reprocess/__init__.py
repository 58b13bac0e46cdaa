"""Reprocessing history on a Dask cluster: files are tasks, workers run the one analysis road
and write verdicts to a store or a Parquet dataset (see docs/reprocess.md)."""
