"""imgsearch benchmark suite: ``python benchmarks/run.py`` (``make bench``) writes docs/benchmarks.md."""

import os

# On a shared machine OpenMP's default busy-waiting is pathological (a 2-thread FAISS k-means ran 3-4x
# slower than with 1 thread under load); passive waiting costs nothing on an idle machine. It only takes
# effect if set before libgomp loads, so it is set here, before any benchmark module imports faiss/torch.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
