"""Runnable measurements (`python benchmarks/<name>.py`); a package so that they share `benchmarks._common`."""
