"""Shared helpers of the benchmark suite: timing, peak memory, machine description, result records.

Every benchmark module exposes ``CONFIGS`` (``smoke``/``default``/``full`` keyword sets) and
``run(**config) -> dict`` returning a *section*::

    {"name": ..., "title": ..., "command": ..., "tables": [{"title", "columns", "rows", "note"}],
     "goals": [{"goal", "measured", "met"}], "notes": [...], "skipped": None | "why"}

``run.py`` renders the sections into docs/benchmarks.md and docs/benchmarks.json, so the document
holds exactly the numbers the suite printed.
"""

from __future__ import annotations

import datetime as _dt
import gc
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_REALDATA = REPO_ROOT.parent / "shared" / "realdata"


# --------------------------------------------------------------------------- timing
def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    """Run ``fn`` once; return (seconds, result)."""
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def median_time(fn: Callable[[], Any], repeats: int = 3, warmup: int = 1) -> float:
    """Median wall time of ``fn`` over ``repeats`` runs after ``warmup`` untimed runs.

    The median, not the mean, because the machine is shared: one run stalled by a neighbour must not
    move the figure.
    """
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(max(1, repeats)):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


# --------------------------------------------------------------------------- memory
def _status_kib(field: str) -> int | None:
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def rss_mib() -> float:
    """Current resident set size of this process in MiB (0 when /proc is unavailable)."""
    kib = _status_kib("VmRSS")
    return (kib or 0) / 1024


def _reset_peak() -> bool:
    # Linux >= 4.0: writing 5 to clear_refs resets VmHWM to the current RSS, so the peak of one
    # measured block is not hidden by an earlier, larger one (getrusage's maxrss cannot be reset).
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


class PeakMemory:
    """Peak resident memory of a block, above the RSS at its start (MiB).

    Resident memory, not ``tracemalloc``: FAISS and PyTorch allocate outside Python's allocator, and
    the question is what the machine must hold.
    """

    def __init__(self) -> None:
        self.start_mib = 0.0
        self.peak_mib = 0.0
        self.end_mib = 0.0
        self.exact = False

    @property
    def peak_delta_mib(self) -> float:
        return max(0.0, self.peak_mib - self.start_mib)

    @property
    def retained_delta_mib(self) -> float:
        return self.end_mib - self.start_mib


def _malloc_trim() -> None:
    # Hand freed heap pages back to the OS first, or a block that reuses them shows no growth.
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


@contextmanager
def peak_memory() -> Iterator[PeakMemory]:
    gc.collect()
    _malloc_trim()
    pm = PeakMemory()
    pm.exact = _reset_peak()
    pm.start_mib = rss_mib()
    try:
        yield pm
    finally:
        hwm = _status_kib("VmHWM")
        if pm.exact and hwm is not None:
            pm.peak_mib = hwm / 1024
        else:  # no reset possible: lifetime peak, an upper bound
            pm.peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        pm.end_mib = rss_mib()


# --------------------------------------------------------------------------- machine
def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _ram_gib() -> float:
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) / 1024**2
    except OSError:
        pass
    return float("nan")


def _version(module: str) -> str:
    try:
        mod = __import__(module)
        return str(getattr(mod, "__version__", "?"))
    except Exception:
        return "not installed"


def _git_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True, check=True
        )
        return out.stdout.strip()
    except Exception:
        return "unknown"


def machine_info() -> dict[str, Any]:
    """The machine and software the figures were measured on."""
    import torch

    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count() or 0
    try:
        import faiss

        omp = faiss.omp_get_max_threads()
    except Exception:
        omp = None
    return {
        "date": _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu_model": _cpu_model(),
        "cpu_cores": os.cpu_count(),
        "cpu_cores_usable": usable,
        "ram_gib": round(_ram_gib(), 1),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        "python": platform.python_version(),
        "platform": platform.platform(),
        "torch": _version("torch"),
        "torch_threads": torch.get_num_threads(),
        "faiss": _version("faiss"),
        "faiss_omp_threads": omp,
        "timm": _version("timm"),
        "lightning": _version("lightning"),
        "numpy": _version("numpy"),
        "pillow": _version("PIL"),
        "cuda_available": torch.cuda.is_available(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "git_commit": _git_commit(),
    }


# --------------------------------------------------------------------------- results
def section(
    name: str,
    title: str,
    command: str,
    *,
    tables: list[dict[str, Any]] | None = None,
    goals: list[dict[str, Any]] | None = None,
    notes: list[str] | None = None,
    skipped: str | None = None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    return {
        "name": name,
        "title": title,
        "command": command,
        "tables": tables or [],
        "goals": goals or [],
        "notes": notes or [],
        "skipped": skipped,
        **(extra or {}),
    }


def table(title: str, columns: list[str], rows: list[list[Any]], note: str = "") -> dict[str, Any]:
    return {"title": title, "columns": columns, "rows": rows, "note": note}


def goal(text: str, measured: str, met: bool | None) -> dict[str, Any]:
    return {"goal": text, "measured": measured, "met": met}


def log(msg: str) -> None:
    """Progress line on stderr (stdout stays for the result summary)."""
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def command_for(name: str, full: bool = False) -> str:
    return f".venv/bin/python benchmarks/run.py --only {name}" + (" --full" if full else "")
