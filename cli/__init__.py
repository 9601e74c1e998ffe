"""The ``smartbrum`` command: one module per command group (:mod:`cli.main` assembles them).

Every command turns bad input into a one-line message on stderr and exit status 2, never a
traceback, and prints on stdout only what it promises. The outermost layer: it may import
everything it drives (the demo, the API, the market, the optimiser, metering).
"""
