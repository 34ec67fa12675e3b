"""Renamed: the side-by-side bench is bench/engine_peers.py. These names stay importable for
bench/engine_gpu.py, which shares the checkpoint shapes and disk helpers."""

from engine_peers import SHAPES, _median, _tokenizer, evict, raw_read_gbps, rss, warm  # noqa: F401
