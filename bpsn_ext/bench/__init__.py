"""Benchmarks and the measurement helpers they share (timing, peak memory, reports)."""

from bpsn_ext.bench.measure import (
    format_table,
    peak_memory_bytes,
    time_fn,
    time_fns,
    write_json_atomic,
)

__all__ = ["time_fn", "time_fns", "peak_memory_bytes", "write_json_atomic", "format_table"]
