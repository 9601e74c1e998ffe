"""The outer layer: the ``smartbrum`` command line, the file formats it reads and writes, and
(later) the FastAPI service, settings and scheduler wiring.

The only layer that reads files, the environment or the clock; it may import everything below.
"""
