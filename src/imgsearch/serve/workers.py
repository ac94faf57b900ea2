"""``workers=N`` serve processes behind one port.

The supervisor (:func:`run_workers`) binds the socket once, imports the heavy libraries (torch, timm, FAISS,
ONNX Runtime: about 450 MiB of each process's private memory), and on a CPU loads the searcher with
PyTorch on one thread (the item table, the model's weights, the memory-mapped index: no thread pool is
started, nothing has run yet); it freezes the garbage collector's view of all that and only then forks the
``N`` workers, which accept on the shared socket (the kernel spreads connections between them). What was
loaded stays shared copy-on-write. Each worker then restores its thread count and opens its own ONNX
Runtime session (no session or thread pool crosses a fork). The index's codes are memory-mapped
(``mmap: true``), so the page cache holds one copy for all workers (:mod:`imgsearch.retrieval.mmap_index`).
Each worker reloads a replaced index on its own (:mod:`imgsearch.serve.reload`), into memory of its own.
A worker that dies is started again.

:func:`app_from_env` serves the same app to an external process manager, e.g.
``uvicorn --factory imgsearch.serve.workers:app_from_env --workers 2`` with :data:`CONFIG_ENV` set (those
workers are spawned, so each holds its own copy of the libraries).
"""

from __future__ import annotations

import gc
import json
import logging
import multiprocessing
import os
import signal
import socket
import time
from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI

log = logging.getLogger(__name__)

#: the resolved serve config (JSON) that :func:`app_from_env` builds its app from
CONFIG_ENV = "IMGSEARCH_SERVE_CONFIG"

#: imported once in the supervisor, before the fork, so the workers share them
PRELOAD = (
    "torch",
    "timm",
    "faiss",
    "onnxruntime",
    "imgsearch.models.export",
    "imgsearch.retrieval.search",
    "imgsearch.serve.app",
)


def preload() -> None:
    """Import :data:`PRELOAD` and move every object into the GC's permanent generation (``gc.freeze``): the
    collector then never writes to them, which would copy their pages into each worker."""
    import importlib

    for name in PRELOAD:
        try:
            importlib.import_module(name)
        except ImportError as exc:  # an optional runtime missing: the worker says so when it needs it
            log.info("not preloaded: %s (%s)", name, exc)
    gc.collect()
    gc.freeze()


def shared_searcher(cfg: Mapping[str, Any]) -> Any | None:
    """The searcher the workers share (loaded with PyTorch on one thread, see the module docstring), or
    ``None`` where each worker must load its own (a GPU: CUDA does not survive a fork)."""
    import torch

    from imgsearch.serve.app import load_searcher

    if str(cfg.get("device", "cpu")) != "cpu":
        return None
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # no OpenMP pool in the supervisor: a forked child could not use its threads
    try:
        return load_searcher({**cfg, "runtime": "torch"})
    finally:
        os.environ["IMGSEARCH_WORKER_THREADS"] = str(threads)


def attach_runtime(searcher: Any, cfg: Mapping[str, Any]) -> Any:
    """Give a shared searcher the configured runtime (its ONNX Runtime session), in the worker."""
    from imgsearch.models.export import select_runtime
    from imgsearch.retrieval.embed import PIXELS
    from imgsearch.retrieval.locations import resolve_checkpoint_path

    runtime = str(cfg.get("runtime", "auto"))
    if runtime == "torch" or searcher.module is None or searcher.kind == PIXELS:
        return searcher
    checkpoint = cfg.get("checkpoint")
    if not checkpoint and (searcher.manifest.get("checkpoint") or {}).get("path"):
        checkpoint = resolve_checkpoint_path(str(cfg["index_dir"]), searcher.manifest)
    searcher.onnx = select_runtime(searcher.module, checkpoint, runtime, gpu=False)
    return searcher


def _worker(cfg: dict[str, Any], sock: socket.socket, shared: Any | None) -> None:
    import torch
    import uvicorn

    from imgsearch.serve.app import build_app, uvicorn_options

    gc.unfreeze()  # the worker's own objects are collected as usual; the frozen ones stay where they are
    torch.set_num_threads(int(os.environ.get("IMGSEARCH_WORKER_THREADS") or torch.get_num_threads()))
    app = build_app(cfg, attach_runtime(shared, cfg) if shared is not None else None)
    server = uvicorn.Server(uvicorn.Config(app, **uvicorn_options(cfg)))
    server.run(sockets=[sock])


def run_workers(cfg: Mapping[str, Any], workers: int) -> None:
    """Serve ``cfg`` (``index_dir`` and ``checkpoint`` absolute) from ``workers`` forked processes until
    SIGINT / SIGTERM, which is passed on to them (each finishes its requests, uvicorn's graceful stop)."""
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    cfg = dict(cfg)
    from imgsearch.serve.app import uvicorn_options

    uvicorn_options(cfg)  # a bad http= / loop= fails once here, not in every forked worker
    sock = socket.socket(socket.AF_INET6 if ":" in str(cfg.get("host", "")) else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((str(cfg.get("host", "127.0.0.1")), int(cfg.get("port", 8000))))
    sock.listen(2048)
    sock.set_inheritable(True)
    preload()
    shared = shared_searcher(cfg)
    gc.collect()
    gc.freeze()
    ctx = multiprocessing.get_context("fork")
    stopping = False

    def start() -> Any:
        proc = ctx.Process(
            target=_worker, args=(cfg, sock, shared), name="imgsearch-serve-worker", daemon=False
        )
        proc.start()
        return proc

    def stop(signum: int, frame: Any) -> None:
        nonlocal stopping
        stopping = True
        for proc in procs:
            if proc.is_alive():
                os.kill(proc.pid, signal.SIGTERM)

    procs = [start() for _ in range(workers)]
    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    log.info("serving on http://%s:%s/ with %d workers (pids %s)", cfg.get("host"), cfg.get("port"), workers,
             [p.pid for p in procs])  # fmt: skip
    try:
        while not stopping:
            for i, proc in enumerate(procs):
                if not proc.is_alive() and not stopping:
                    log.error("worker %d exited with %s; starting another", proc.pid, proc.exitcode)
                    procs[i] = start()
            time.sleep(0.5)
    finally:
        for proc in procs:
            proc.join(timeout=30)
            if proc.is_alive():
                proc.kill()
        sock.close()


def app_from_env() -> FastAPI:
    """The app of one worker for an external process manager (uvicorn's ``--factory``): built from the JSON
    serve config in :data:`CONFIG_ENV` (``index_dir`` and ``checkpoint`` absolute)."""
    from imgsearch.serve.app import build_app

    raw = os.environ.get(CONFIG_ENV)
    if not raw:
        raise RuntimeError(f"{CONFIG_ENV} is not set: it holds the JSON serve config of each worker")
    return build_app(json.loads(raw))
