"""Parquet to chunks: the dataset index, units, shuffle plans, the reader, the epoch cache."""
