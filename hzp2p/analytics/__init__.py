"""Analytics without personal data: non-personal aggregates of committed state, exported.

`aggregates` turns a committed state (any StateReader) into the rows of the
export tables and answers `epi_summary` (the gateway's `/v1/epi/summary`); it
needs nothing beyond the core install. `sources` opens a node's state
read-only (its SQLite file, or the running daemon's admin socket), `export`
writes the tables as Parquet or CSV with a manifest, `query` runs DuckDB over
an export, and `cli` registers `hzp2p export` and `hzp2p query`. The last
three need the `analytics` extra (pyarrow, duckdb). See docs/analytics.md.
"""
