"""Scribeline's benchmark suite: load generators that each start a fresh server.

Run everything with ``python -m bench.run_all``; each scenario is also a module with
its own ``main()`` and ``--help`` (``python -m bench.fanout --help``). See bench/README.md.
"""
