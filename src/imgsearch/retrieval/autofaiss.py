"""Hand-off to autofaiss: an index it built from imgsearch-embed's shards becomes an index directory.

autofaiss (``autofaiss build_index --embeddings=<shards>/embeddings``, locally or with
``distributed="pyspark"`` on a cluster) reads the ``.npy`` files in sorted name order, the order of
``metadata/*.parquet``, so index position ``i`` is row ``i`` of the concatenated tables. autofaiss is not a
dependency (its releases need numpy < 2); only its output file is read here.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import faiss

from imgsearch.retrieval.build import write_index_dir_from_shards
from imgsearch.retrieval.shards import read_spec


def index_dir_from_autofaiss(
    shard_dir: str | os.PathLike[str],
    index_path: str | os.PathLike[str],
    output_dir: str | os.PathLike[str],
    *,
    metric: str = "ip",
    normalize: bool | None = None,
    index_infos_path: str | os.PathLike[str] | None = None,
) -> Path:
    """Write ``output_dir`` (index.faiss, items.csv, manifest.json) around autofaiss's ``index_path``.

    ``normalize`` says whether queries must be L2-normalised; autofaiss indexes the vectors as they are,
    so the default is whether the shards hold normalised vectors (``shards.json``'s ``normalized``).

    Raises:
        ValueError: the index does not hold exactly the shards' vectors, or has another dimension.
    """
    spec = read_spec(shard_dir)
    index = faiss.read_index(str(index_path))
    if index.d != int(spec["dim"]):
        raise ValueError(f"{index_path} has dimension {index.d}, the shards {spec['dim']}")
    infos = {}
    if index_infos_path is not None and Path(index_infos_path).is_file():
        infos = json.loads(Path(index_infos_path).read_text(encoding="utf-8"))
    factory = str(infos.get("index_key") or type(faiss.downcast_index(index)).__name__)
    return write_index_dir_from_shards(
        shard_dir,
        output_dir,
        index,
        factory=factory,
        metric=metric,
        normalize=bool(spec.get("normalized", False)) if normalize is None else normalize,
        add=False,
        manifest_extra={"built_by": "autofaiss", "autofaiss_infos": infos},
    )
