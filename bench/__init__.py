"""Benchmarks: each module with a ``main()`` measures one thing and writes JSON under
``bench/results/``. Run them all with ``make bench`` (``python -m bench.run_all``).

Benchmarks are measurements, not tests: nothing here asserts on timings.
"""
