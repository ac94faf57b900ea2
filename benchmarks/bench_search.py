"""Search: QPS and recall@10 against exact search, index build time and memory, per index type and size.

For each gallery size N and dimension d, the gallery is generated chunk by chunk
(:mod:`benchmarks.synthetic`) and added to each index in turn; only one index lives at a time.
Ground truth is the exact (``Flat``, inner product on L2-normalised vectors = cosine) top-10.
recall@10 here is the ANN literature's "10-recall@10": the fraction of the exact top-10 that the
index returns in its top-10. QPS is measured with all queries in one batched ``search`` call (the
way ``imgsearch-eval`` and a batching server use the index) on every core FAISS is given; the
speed-up column is QPS divided by the exact index's QPS measured in the same run.
"""

from __future__ import annotations

import gc
import math
from typing import Any

import faiss
import numpy as np

try:
    from benchmarks._common import command_for, goal, log, median_time, peak_memory, section, table, timed
    from benchmarks.synthetic import ClusteredEmbeddings
except ImportError:  # run as a script from benchmarks/
    from _common import command_for, goal, log, median_time, peak_memory, section, table, timed
    from synthetic import ClusteredEmbeddings

NAME = "search"
RECALL_GOAL = 0.95
SPEEDUP_GOAL = 10.0

CONFIGS: dict[str, dict[str, Any]] = {
    "smoke": {"sizes": [1_000], "dims": [16], "n_queries": 20, "repeats": 1, "sweeps": "small"},
    "default": {"sizes": [10_000, 100_000], "dims": [512, 1280], "n_queries": 500, "repeats": 3},
    "full": {"sizes": [10_000, 100_000, 1_000_000], "dims": [512, 1280], "n_queries": 1000, "repeats": 3},
}


def nlist_for(n: int) -> int:
    """Inverted lists: about 4*sqrt(N) (FAISS guideline), rounded to a power of two, at least 16."""
    return max(16, 2 ** round(math.log2(4 * math.sqrt(n))))


def index_specs(n: int, d: int, sweeps: str = "full") -> list[dict[str, Any]]:
    """Index factory strings with the search-time parameter sweep for each.

    ``IVF…,PQ…x4fs,RFlat``: an inverted file over 4-bit fast-scan PQ codes (8 dimensions per
    sub-quantizer), whose top ``k * k_factor`` candidates are re-ranked with the exact vectors. Its
    ``base_index`` (the same trained IVF-PQ without re-ranking) is measured too, from the same build,
    to show what the re-ranking buys.
    """
    nlist = nlist_for(n)
    m_fs = d // 8 if d % 8 == 0 and d >= 64 else d // 2
    m_fs += m_fs % 2  # fast-scan packs sub-quantizers in pairs
    small = sweeps == "small"
    ef = [16, 64] if small else [16, 32, 64, 128]
    nprobe = [p for p in ([4, 16] if small else [4, 8, 16, 32, 64]) if p <= nlist]
    return [
        {"factory": "HNSW32", "params": [f"efSearch={e}" for e in ef], "train": 0, "base_params": []},
        {
            "factory": f"IVF{nlist},PQ{m_fs}x4fs,RFlat",
            "params": [f"nprobe={p},k_factor_rf=4" for p in nprobe] + [f"nprobe={nprobe[-1]},k_factor_rf=8"],
            # FAISS warns below 39 training points per list; 32 keeps k-means affordable on 2 cores
            "train": min(n, 32 * nlist),
            "base_params": [f"nprobe={p}" for p in nprobe[-2:]],
        },
    ]


def recall_at(exact: np.ndarray, found: np.ndarray) -> float:
    """Mean over queries of |found top-k ∩ exact top-k| / k."""
    k = exact.shape[1]
    hits = sum(
        len(np.intersect1d(e, f[f >= 0], assume_unique=False)) for e, f in zip(exact, found, strict=True)
    )
    return hits / (k * len(exact))


def _fill(index: faiss.Index, gen: ClusteredEmbeddings, n: int, n_train: int) -> tuple[float, float]:
    """Train (on the first ``n_train`` gallery vectors) and add the gallery chunk by chunk."""
    train_s = 0.0
    if n_train:
        parts, have = [], 0
        for x, _ in gen.gallery_chunks(n):
            parts.append(x[: n_train - have])
            have += len(parts[-1])
            if have >= n_train:
                break
        sample = np.concatenate(parts)
        train_s, _ = timed(lambda: index.train(sample))
        del sample, parts
    add_s = 0.0
    for x, _ in gen.gallery_chunks(n):
        dt, _ = timed(lambda x=x: index.add(x))
        add_s += dt
    return train_s, add_s


def bench_one(
    n: int, d: int, n_queries: int, repeats: int, sweeps: str = "full", seed: int = 0
) -> list[dict]:
    gen = ClusteredEmbeddings(dim=d, rank=max(8, d // 4), seed=seed)
    q, _ = gen.queries(n_queries)
    k = 10
    rows: list[dict[str, Any]] = []

    log(f"search N={n:,} d={d}: Flat")
    with peak_memory() as mem:
        flat = faiss.IndexFlatIP(d)
        _, add_s = _fill(flat, gen, n, 0)
    exact_s = median_time(lambda: flat.search(q, k), repeats=repeats, warmup=0)  # noqa: F821 (bound above)
    _, exact = flat.search(q, k)
    exact_qps = n_queries / exact_s
    rows.append(
        {
            "N": n, "d": d, "index": "Flat", "params": "-", "recall@10": recall_at(exact, exact),
            "qps": exact_qps, "speedup": 1.0, "build_s": add_s, "mem_mib": mem.retained_delta_mib,
            "peak_build_mib": mem.peak_delta_mib,
        }
    )  # fmt: skip
    del flat
    gc.collect()

    ps = faiss.ParameterSpace()
    for spec in index_specs(n, d, sweeps):
        log(f"search N={n:,} d={d}: {spec['factory']}")
        with peak_memory() as mem:
            index = faiss.index_factory(d, spec["factory"], faiss.METRIC_INNER_PRODUCT)
            train_s, add_s = _fill(index, gen, n, spec["train"])
        for p in spec["params"]:
            ps.set_index_parameters(index, p)
            t = median_time(lambda index=index: index.search(q, k), repeats=repeats)
            _, found = index.search(q, k)
            qps = n_queries / t
            rows.append(
                {
                    "N": n, "d": d, "index": spec["factory"], "params": p,
                    "recall@10": recall_at(exact, found), "qps": qps, "speedup": qps / exact_qps,
                    "build_s": train_s + add_s, "mem_mib": mem.retained_delta_mib,
                    "peak_build_mib": mem.peak_delta_mib,
                }
            )  # fmt: skip
        base = getattr(index, "base_index", None)
        for p in spec["base_params"]:
            ps.set_index_parameters(base, p)
            t = median_time(lambda base=base: base.search(q, k), repeats=repeats)
            _, found = base.search(q, k)
            qps = n_queries / t
            rows.append(
                {
                    "N": n, "d": d, "index": spec["factory"].rsplit(",", 1)[0] + " (no re-ranking)",
                    "params": p, "recall@10": recall_at(exact, found), "qps": qps, "speedup": qps / exact_qps,
                    "build_s": train_s + add_s, "mem_mib": None, "peak_build_mib": None,
                }
            )  # fmt: skip
        del index, base
        gc.collect()
    return rows


def best_choice(rows: list[dict]) -> dict | None:
    """Fastest configuration of one (N, d) with recall@10 >= the goal (excluding exact Flat)."""
    ok = [r for r in rows if r["index"] != "Flat" and r["recall@10"] >= RECALL_GOAL]
    return max(ok, key=lambda r: r["qps"]) if ok else None


def guidance(rows: list[dict], sizes: list[int], dims: list[int]) -> list[str]:
    """Which index to choose at which size, derived from this run's rows (not written by hand)."""
    out = []
    for n in sizes:
        for d in dims:
            sub = [r for r in rows if r["N"] == n and r["d"] == d]
            best = best_choice(sub)
            flat = next(r for r in sub if r["index"] == "Flat")
            if best is None or best["speedup"] < 2.0:
                why = (
                    "no approximate index reached"
                    if best is None
                    else f"the best gain is {best['speedup']:.1f}x at"
                )
                out.append(
                    f"N={n:,}, d={d}: choose Flat (exact, {flat['qps']:.0f} QPS, {flat['mem_mib']:.0f} MiB); "
                    f"{why} recall@10 >= {RECALL_GOAL}."
                )
            else:
                hnsw = [r for r in sub if r["index"] == "HNSW32" and r["recall@10"] >= RECALL_GOAL]
                extra = ""
                if hnsw and best["index"] != "HNSW32":
                    h = max(hnsw, key=lambda r: r["qps"])
                    extra = f" (HNSW32 {h['params']}: {h['speedup']:.1f}x, build {h['build_s']:.0f} s)"
                out.append(
                    f"N={n:,}, d={d}: choose {best['index']} with {best['params']}: recall@10 "
                    f"{best['recall@10']:.3f} at {best['speedup']:.1f}x the exact QPS, "
                    f"build {best['build_s']:.0f} s{extra}."
                )
    return out


def _fmt_row(r: dict) -> list[Any]:
    return [
        f"{r['N']:,}", r["d"], r["index"], r["params"], round(r["recall@10"], 4), round(r["qps"], 1),
        round(r["speedup"], 2), round(r["build_s"], 2), _mib(r["mem_mib"]), _mib(r["peak_build_mib"]),
    ]  # fmt: skip


def _mib(v: float | None) -> Any:
    return "(same build)" if v is None else round(v, 1)


def run(
    sizes: list[int], dims: list[int], n_queries: int, repeats: int, sweeps: str = "full", full: bool = False
) -> dict[str, Any]:
    faiss.omp_set_num_threads(faiss.omp_get_max_threads())
    all_rows: list[dict] = []
    for n in sizes:
        for d in dims:
            nq = n_queries if n < 1_000_000 else min(n_queries, 200)  # exact search at 1M is the slow part
            all_rows.extend(bench_one(n, d, nq, repeats, sweeps))

    columns = [
        "N", "d", "index", "search params", "recall@10", "QPS", "x exact QPS", "build s",
        "index MiB (RSS)", "peak build MiB",
    ]  # fmt: skip
    tables = [
        table(
            "QPS and recall@10 vs exact search (clustered L2-normalised vectors, inner product)",
            columns,
            [_fmt_row(r) for r in all_rows],
            note="QPS: all queries in one batched call, median of the timed repeats. 'index MiB' is the "
            "resident memory the index keeps after building; 'build s' is train + add.",
        )
    ]
    choice_rows = []
    for n in sizes:
        for d in dims:
            rows = [r for r in all_rows if r["N"] == n and r["d"] == d]
            best = best_choice(rows)
            if best is None:
                choice_rows.append(
                    [f"{n:,}", d, "Flat (no approximate index reached the recall goal)", "-", "-", "-"]
                )
            else:
                choice_rows.append(
                    [
                        f"{n:,}",
                        d,
                        best["index"],
                        best["params"],
                        round(best["recall@10"], 4),
                        round(best["speedup"], 2),
                    ]
                )
    tables.append(
        table(
            f"Fastest index with recall@10 >= {RECALL_GOAL} per size (chosen from the rows above)",
            ["N", "d", "index", "search params", "recall@10", "x exact QPS"],
            choice_rows,
        )
    )

    goals = []
    largest = max(sizes)
    for d in dims:
        best = best_choice([r for r in all_rows if r["N"] == largest and r["d"] == d])
        label = f"N={largest:,}, d={d}"
        if best is None:
            goals.append(goal(f"recall@10 >= {RECALL_GOAL} at >= {SPEEDUP_GOAL:g}x exact QPS ({label})",
                              "no approximate index reached the recall goal", False))  # fmt: skip
        else:
            goals.append(
                goal(
                    f"recall@10 >= {RECALL_GOAL} at >= {SPEEDUP_GOAL:g}x exact QPS ({label})",
                    f"{best['index']} {best['params']}: recall@10 {best['recall@10']:.4f} at "
                    f"{best['speedup']:.1f}x",
                    best["speedup"] >= SPEEDUP_GOAL,
                )
            )
    notes = guidance(all_rows, sizes, dims)
    if largest < 1_000_000:
        notes.append(
            "The issue's goal is stated at 1M items; the default run stops at "
            f"{largest:,} (run with --full for 1M). The goal row above is for the largest size measured."
        )
    return section(
        NAME,
        "Search: QPS and recall@10 against exact search",
        command_for(NAME, full),
        tables=tables,
        goals=goals,
        notes=notes,
        extra={"rows": all_rows},
    )
