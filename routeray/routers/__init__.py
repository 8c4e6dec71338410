"""Routers: each predicts P(strong model wins | prompt), batch-first, with no network I/O at import."""
