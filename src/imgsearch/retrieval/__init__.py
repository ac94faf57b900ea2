"""Retrieval: embed a catalogue with a trained classifier, index it with FAISS, evaluate and search.

Submodules (imported on demand, so ``import imgsearch.retrieval.metrics`` stays light):

* :mod:`~imgsearch.retrieval.metrics` - mAP@k, mAP@k_norm, MAP@R, recall@k, precision@k
* :mod:`~imgsearch.retrieval.embed` - catalogue embeddings through ``lightning.Trainer.predict``
* :mod:`~imgsearch.retrieval.index` - FAISS ``index_factory`` build, atomic index directory, manifest guard
* :mod:`~imgsearch.retrieval.evaluate` - query-vs-gallery evaluation in batches
* :mod:`~imgsearch.retrieval.search` - :class:`~imgsearch.retrieval.search.Searcher` over a saved index
* :mod:`~imgsearch.retrieval.visualize` - PNG grid of queries and their results
"""
