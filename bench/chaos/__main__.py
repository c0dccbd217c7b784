"""``python -m bench.chaos`` (``make chaos``)."""

from bench.chaos import main

main()
