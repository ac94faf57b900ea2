"""Before/after on a busy machine: two source trees served at once, the same load sent to each in turn.

    PYTHONPATH=src python benchmarks/serve_ab.py /path/to/old/src src --rounds 5

Both servers stay up on the demo index; each round sends ``--single`` one-client requests and ``--busy``
16-client requests (the lean client, benchmarks/serve_client.py) to one, then the other, so a neighbour's
load falls on both alike. Prints the medians over the rounds as JSON.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

try:
    from benchmarks.bench_serve import DEMO_INDEX, _free_port, _lean_load, _serve, _stop, _wait_ready
except ImportError:  # run as a script from benchmarks/
    from bench_serve import DEMO_INDEX, _free_port, _lean_load, _serve, _stop, _wait_ready


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("trees", nargs=2, type=Path, help="two src folders: before, after")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--single", type=int, default=40)
    parser.add_argument("--busy", type=int, default=160)
    parser.add_argument("--clients", type=int, default=16)
    args = parser.parse_args()
    from imgsearch.retrieval.index import load_index_dir

    _, items, _ = load_index_dir(DEMO_INDEX)
    paths = [p for p in items["image_path"].astype(str)[:32] if Path(p).is_file()]
    servers = []
    try:
        for tree in args.trees:
            port = _free_port()
            servers.append((str(tree), port, _serve(tree, port)))
        for _, port, proc in servers:
            _wait_ready(f"http://127.0.0.1:{port}", proc)
            _lean_load(port, paths, 1, 20, {"k": 12})  # warm-up
        runs: dict[str, dict[str, list[dict]]] = {t: {"single": [], "busy": []} for t, _, _ in servers}
        for _ in range(args.rounds):
            for tree, port, _ in servers:
                runs[tree]["single"].append(_lean_load(port, paths, 1, args.single, {"k": 12}))
                runs[tree]["busy"].append(_lean_load(port, paths, args.clients, args.busy, {"k": 12}))
    finally:
        for _, _, proc in servers:
            _stop(proc)
    out = {
        tree: {
            kind: {m: statistics.median(r[m] for r in rs) for m in ("rps", "p50", "p95")} | {"errors": sum(
                r["errors"] for r in rs)}
            for kind, rs in kinds.items()
        }
        for tree, kinds in runs.items()
    }  # fmt: skip
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
