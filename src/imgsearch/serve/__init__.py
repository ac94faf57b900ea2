"""A web page and a JSON API to search a built index by photo (``imgsearch-serve``).

:func:`imgsearch.serve.app.create_app` builds the FastAPI app over a loaded searcher;
:func:`imgsearch.serve.app.main` is the Hydra entry point (``conf/serve.yaml``).
"""

import os

# libgomp reads this once, when torch loads, so it is set before any serve module imports torch. Its
# default lets PyTorch's idle OpenMP threads spin for the core the HTTP threads need: with 16 clients on
# the demo index, 187 and 203 req/s unset against 256 and 220 with PASSIVE (same run, 2 cores,
# 2026-12-04). An explicit setting in the environment wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
