"""Compiles as tasks an executor (`compiler.executors`) runs anywhere.

- `compile`: one compile on a worker (steps 1–6 of the driver), and its end here (timing, writing)
- `bundle`: the files a compile reads, packed as bytes for a worker that shares no filesystem
- `fleet`: compile-many, every model for every target as tasks of one executor
"""
