"""Run the imgsearch benchmark suite and write docs/benchmarks.md + docs/benchmarks.json.

    .venv/bin/python benchmarks/run.py                 # default sizes (about 20 min on 2 cores)
    .venv/bin/python benchmarks/run.py --full          # adds the 1M-item figures
    .venv/bin/python benchmarks/run.py --only search   # one benchmark; the others' sections are kept

Each benchmark returns a section of plain numbers (see ``benchmarks/_common.py``); this script
prints every section as Markdown the moment it finishes and writes the same rendering into the
document, so docs/benchmarks.md holds exactly the figures the suite printed.
"""

from __future__ import annotations

import os

# A shared machine (CI runners, several jobs on 2 cores) makes OpenMP's default busy-waiting pathological:
# a 2-thread FAISS k-means ran 3-4x slower than with 1 thread under load. Passive waiting removes that
# and costs nothing on an idle machine. It must be set before libgomp is loaded (faiss / torch import).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import importlib
import json
import sys
import time
import traceback
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import REPO_ROOT, log, machine_info, section

# Order: the cheap, dependency-free ones first.
BENCHMARKS: dict[str, str] = {
    "search": "benchmarks.bench_search",
    "eval_scaling": "benchmarks.bench_eval_scaling",
    "loading": "benchmarks.bench_loading",
    "embedding": "benchmarks.bench_embedding",
    "train_step": "benchmarks.bench_train_step",
    "gpu": "benchmarks.bench_gpu",
    "shard_build": "benchmarks.bench_shard_build",
    "live": "benchmarks.bench_live",
    "words": "benchmarks.bench_words",
    "serve": "benchmarks.bench_serve",
    "runtime": "benchmarks.bench_runtime",
    "runtime_build": "benchmarks.bench_runtime_build",
}


def parse_overrides(items: list[str] | None) -> dict[str, Any]:
    """``--set key=value`` pairs; values are JSON (``sizes=[1000000]``) or plain strings."""
    out: dict[str, Any] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise SystemExit(f"--set expects key=value, got {item!r}")
        try:
            out[key] = json.loads(value)
        except ValueError:
            out[key] = value
    return out


def section_key(name: str, size: str, overrides: dict[str, Any]) -> str:
    """Sections are kept per benchmark and configuration, so a --full or --set run adds to the default one."""
    if size == "default" and not overrides:
        return name
    return f"{name} [{size}" + "".join(f", {k}={json.dumps(v)}" for k, v in overrides.items()) + "]"


def run_one(name: str, size: str, full: bool, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """Run one benchmark; a failure becomes a section saying so instead of stopping the suite."""
    t0 = time.perf_counter()
    overrides = dict(overrides or {})
    try:
        mod = importlib.import_module(BENCHMARKS[name])
        config = dict(mod.CONFIGS[size])
        unknown = sorted(set(overrides) - set(config))
        if unknown:
            raise ValueError(f"--set {unknown}: not options of {name} (options: {sorted(config)})")
        config.update(overrides)
        log(f"{name}: start ({size}: {config})")
        result = mod.run(**config, full=full)
    except Exception as exc:  # the suite reports the failure, it does not hide it
        log(f"{name}: FAILED: {exc!r}")
        traceback.print_exc()
        result = section(
            name, name, f".venv/bin/python benchmarks/run.py --only {name}", skipped=f"failed: {exc!r}"
        )
        result["error"] = traceback.format_exc()
    result["key"] = section_key(name, size, overrides)
    flags = {"smoke": " --smoke", "full": " --full"}.get(size, "")
    result["command"] = f".venv/bin/python benchmarks/run.py --only {name}{flags}" + "".join(
        f" --set '{k}={json.dumps(v)}'" for k, v in overrides.items()
    )
    if result["key"] != name:
        result["title"] = f"{result['title']} ({result['key'][len(name) + 2 : -1]})"
    result["seconds"] = round(time.perf_counter() - t0, 1)
    result["config"] = size
    result["date"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    log(f"{name}: done in {result['seconds']} s")
    return result


# --------------------------------------------------------------------------- rendering
def _cell(v: Any) -> str:
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{v:g}" if abs(v) < 1e6 else f"{v:,.0f}"
    return str(v).replace("|", "\\|")


def render_table(t: dict[str, Any]) -> str:
    lines = [f"**{t['title']}**", "", "| " + " | ".join(t["columns"]) + " |"]
    lines.append("|" + "|".join(" --- " for _ in t["columns"]) + "|")
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in t["rows"]]
    if t.get("note"):
        lines += ["", t["note"]]
    return "\n".join(lines)


def _met(m: bool | None) -> str:
    return {True: "**met**", False: "**not met**", None: "not measured"}[m]


def render_section(s: dict[str, Any]) -> str:
    out = [f"## {s['title']}", ""]
    out.append(
        f"Reproduce: `{s['command']}` "
        f"({s.get('config', '?')} sizes, {s.get('seconds', '?')} s, {s.get('date', '')})"
    )
    out.append("")
    if s.get("skipped"):
        out += [f"**Not run:** {s['skipped']}", ""]
    for g in s["goals"]:
        out.append(f"- Goal: {g['goal']} — measured: {g['measured']} — {_met(g['met'])}")
    if s["goals"]:
        out.append("")
    for t in s["tables"]:
        out += [render_table(t), ""]
    for n in s["notes"]:
        out += [f"- {n}"]
    if s["notes"]:
        out.append("")
    return "\n".join(out)


def render_document(machine: dict[str, Any], sections: list[dict[str, Any]], argv: list[str]) -> str:
    out = [
        "# Benchmarks",
        "",
        "Generated by `make bench` (`.venv/bin/python benchmarks/run.py`); do not edit by hand: every number",
        "below is the one the suite printed, and `docs/benchmarks.json` holds the same results as data.",
        "Every figure is a ratio of two things measured side by side in the same run, or a scaling curve,",
        "so that it means something on a noisy shared machine; absolute rates only describe this machine.",
        "",
        f"Last command: `{' '.join(['.venv/bin/python', 'benchmarks/run.py', *argv])}`. A `--only` run "
        "replaces only its own section(s); each section names its command, sizes, duration and date, and "
        "the machine table describes the latest run (all runs so far on the same machine).",
        "",
        "## Machine",
        "",
        "| property | value |",
        "| --- | --- |",
    ]
    out += [f"| {k} | {_cell(v)} |" for k, v in machine.items()]
    out += ["", "## Goals", "", "| benchmark | goal | measured | status |", "| --- | --- | --- | --- |"]
    for s in sections:
        label = s.get("key", s["name"])
        if s.get("skipped") and not s["goals"]:
            out.append(f"| {label} | - | {_cell(s['skipped'])} | not run |")
        for g in s["goals"]:
            out.append(f"| {_cell(label)} | {_cell(g['goal'])} | {_cell(g['measured'])} | {_met(g['met'])} |")
    out.append("")
    out += [render_section(s) for s in sections]
    return "\n".join(out).rstrip() + "\n"


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--full", action="store_true", help="add the 1M-item figures (hours-scale on 2 cores)")
    p.add_argument(
        "--smoke", action="store_true", help="tiny sizes (seconds): checks the suite, figures mean little"
    )
    p.add_argument(
        "--only", action="append", choices=sorted(BENCHMARKS), help="run only this benchmark (repeatable)"
    )
    p.add_argument("--out", type=Path, default=REPO_ROOT / "docs" / "benchmarks.md")
    p.add_argument("--json", type=Path, default=None, help="results as JSON (default: --out with .json)")
    p.add_argument(
        "--set", action="append", metavar="KEY=VALUE",
        help="override a --only benchmark's config option, e.g. --set 'sizes=[1000000]' --set 'dims=[512]'",
    )  # fmt: skip
    args = p.parse_args(argv)
    if args.smoke and args.full:
        p.error("--smoke and --full exclude each other")
    size = "smoke" if args.smoke else "full" if args.full else "default"
    overrides = parse_overrides(args.set)
    if overrides and not args.only:
        p.error("--set needs --only (options differ between benchmarks)")
    json_path = args.json or args.out.with_suffix(".json")

    from imgsearch.utils.atomic import atomic_write_json, atomic_write_text

    machine = machine_info()
    machine["omp_wait_policy"] = os.environ.get("OMP_WAIT_POLICY")
    names = args.only or list(BENCHMARKS)
    t0 = time.perf_counter()
    new: dict[str, dict[str, Any]] = {}
    for name in names:
        result = run_one(name, size, args.full, overrides)
        new[result["key"]] = result
        print(render_section(result), flush=True)
    machine["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    machine["suite_seconds"] = round(time.perf_counter() - t0, 1)

    # --only keeps the other benchmarks' earlier sections (each carries its own date and config)
    previous: dict[str, Any] = {}
    if args.only and json_path.exists():
        try:
            previous = {s.get("key", s["name"]): s for s in json.loads(json_path.read_text())["sections"]}
        except (ValueError, KeyError):
            previous = {}
    merged = previous | new
    order = list(BENCHMARKS)
    sections = sorted(merged.values(), key=lambda s: (order.index(s["name"]), s.get("key", s["name"])))
    atomic_write_json(json_path, {"machine": machine, "argv": argv, "sections": sections})
    atomic_write_text(args.out, render_document(machine, sections, argv))
    log(f"wrote {args.out} and {json_path} ({machine['suite_seconds']} s)")
    return 1 if any("error" in s for s in new.values()) else 0


if __name__ == "__main__":
    raise SystemExit(main())
