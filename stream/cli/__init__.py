"""The ``stream`` command line: broker, topics, worker, produce, watch, group, demo.

Imports the runtime and the layers below it; never the load-test harness.
"""

from stream.cli.main import main

__all__ = ["main"]
