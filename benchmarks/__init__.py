"""Benchmark scripts; run each from the repository root as `python -m benchmarks.<name>`.

They import the installed `winnow` packages (curation, embeddings, ...) like any user code;
the ones that reuse the test suite's planted-data writers import them from `tests`.
"""
