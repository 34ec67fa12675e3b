"""Offline maps: tile archives (PMTiles, MBTiles), styles, the world basemap, the gazetteer, article
coordinates and region extraction. Knows nothing of Flask."""
