"""Benchmarks of timeback-jupyter (issue #7): `python -m benchmarks --help`.

Each benchmark measures the product side by side with a baseline in one run (extension
enabled vs disabled, batching vs one event per request, tracked vs ground truth), writes its
figures to ``benchmarks/results/<name>.json`` and BENCHMARKS.md is rendered from those files.
"""
