"""A web page and a JSON API to search a built index by photo (``imgsearch-serve``).

:func:`imgsearch.serve.app.create_app` builds the FastAPI app over a loaded searcher;
:func:`imgsearch.serve.app.main` is the Hydra entry point (``conf/serve.yaml``).
"""
