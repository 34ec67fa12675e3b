"""Content: ZIM archives, search, maps and downloads (no Flask here)."""
