"""HTTP server: a drop-in for the original's ``api_v2.py`` that streams and batches concurrent
requests on device (docs/server.md). ``python -m gsv_jax.serve --model-dir models/v2``."""
