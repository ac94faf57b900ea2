"""imgsearch benchmark suite: ``python benchmarks/run.py`` (``make bench``) writes docs/benchmarks.md."""
