"""Hand-run benchmarks of n2v-cascade: quality on real data, time-to-quality, speed, limits.

Run ``python -m benchmarks.run --suite quick`` (``make bench``); results go to
``benchmarks/RESULTS.md`` (generated block between markers) and ``benchmarks/results.json``.
Nothing here is part of ``make test``.
"""
