"""Pieces the benchmark scripts share (a package, so that tests/core/test_benchmarks_smoke.py, which runs
``benchmarks/*.py``, does not take it for a benchmark). The scripts import it as ``support``: Python puts
a script's own folder first on ``sys.path``."""
