"""A tiny PNG writer (RGBA, 8 bits per channel) and the default Almanac icon.

Pure Python on purpose: the ZIM builder needs one small illustration and that
is not worth an imaging library as a dependency.
"""

from __future__ import annotations

import functools
import struct
import zlib

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

Color = tuple[int, int, int, int]


def _chunk(kind: bytes, data: bytes) -> bytes:
    crc = zlib.crc32(kind + data) & 0xFFFFFFFF
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)


def encode_png(width: int, height: int, rgba: bytes) -> bytes:
    """Encode `rgba` (rows top to bottom, 4 bytes a pixel) as a PNG file."""
    if width <= 0 or height <= 0:
        raise ValueError(f"PNG size must be positive, got {width}x{height}")
    stride = width * 4
    if len(rgba) != stride * height:
        raise ValueError(f"expected {stride * height} bytes of RGBA for {width}x{height}, got {len(rgba)}")
    # Filter type 0 (none) on every row: simplest, and zlib does well enough on icons.
    raw = b"".join(b"\x00" + rgba[y * stride : (y + 1) * stride] for y in range(height))
    # 8-bit depth, colour type 6 (RGBA), default compression/filter, no interlace.
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 6, 0, 0, 0)
    return PNG_SIGNATURE + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", zlib.compress(raw, 9)) + _chunk(b"IEND", b"")


def png_size(data: bytes) -> tuple[int, int]:
    """Width and height from a PNG's IHDR; ValueError if `data` is not a PNG."""
    if len(data) < 33 or not data.startswith(PNG_SIGNATURE) or data[12:16] != b"IHDR":
        raise ValueError("not a PNG file")
    width, height = struct.unpack(">II", data[16:24])
    return width, height


# --- the default icon -------------------------------------------------------
# Shapes are described in a 48-unit coordinate space and rasterised with 4x4
# supersampling so the slanted page edges come out smooth at 48x48.


def _inside_polygon(x: float, y: float, pts: list[tuple[float, float]]) -> bool:
    inside = False
    j = len(pts) - 1
    for i in range(len(pts)):
        xi, yi = pts[i]
        xj, yj = pts[j]
        if (yi > y) != (yj > y) and x < (xj - xi) * (y - yi) / (yj - yi) + xi:
            inside = not inside
        j = i
    return inside


def _near_segment(x: float, y: float, a: tuple[float, float], b: tuple[float, float], half_width: float) -> bool:
    ax, ay = a
    bx, by = b
    dx, dy = bx - ax, by - ay
    t = max(0.0, min(1.0, ((x - ax) * dx + (y - ay) * dy) / (dx * dx + dy * dy)))
    px, py = ax + t * dx - x, ay + t * dy - y
    return px * px + py * py <= half_width * half_width


def _in_rounded_square(x: float, y: float, lo: float, hi: float, radius: float) -> bool:
    if not (lo <= x <= hi and lo <= y <= hi):
        return False
    cx = min(max(x, lo + radius), hi - radius)
    cy = min(max(y, lo + radius), hi - radius)
    return (x - cx) ** 2 + (y - cy) ** 2 <= radius * radius


def _book_layers():
    """(hit-test, colour) pairs, bottom layer first: an open book on a blue tile."""
    tile: Color = (36, 84, 122, 255)
    cover: Color = (214, 140, 58, 255)
    paper: Color = (250, 246, 234, 255)
    ink: Color = (120, 136, 150, 255)
    spine: Color = (176, 110, 44, 255)

    left_page = [(8.0, 13.0), (23.2, 16.5), (23.2, 36.5), (8.0, 33.0)]
    right_page = [(24.8, 16.5), (40.0, 13.0), (40.0, 33.0), (24.8, 36.5)]
    cover_shape = [(5.5, 15.5), (24.0, 19.5), (42.5, 15.5), (42.5, 36.5), (24.0, 40.5), (5.5, 36.5)]

    layers = [
        (lambda x, y: _in_rounded_square(x, y, 1.0, 47.0, 9.0), tile),
        (lambda x, y: _inside_polygon(x, y, cover_shape), cover),
        (lambda x, y: _inside_polygon(x, y, left_page), paper),
        (lambda x, y: _inside_polygon(x, y, right_page), paper),
        (lambda x, y: _near_segment(x, y, (24.0, 17.0), (24.0, 38.5), 0.7), spine),
    ]
    # Lines of "text" that follow the slant of each page.
    for row in range(4):
        dy = 4.2 * row
        layers.append((lambda x, y, dy=dy: _near_segment(x, y, (11.0, 18.2 + dy), (20.5, 20.4 + dy), 0.55), ink))
        layers.append((lambda x, y, dy=dy: _near_segment(x, y, (27.5, 20.4 + dy), (37.0, 18.2 + dy), 0.55), ink))
    return layers


@functools.lru_cache(maxsize=4)  # drawing takes a noticeable fraction of a second
def almanac_icon(size: int = 48) -> bytes:
    """The default Almanac illustration (an open book) as a size x size PNG."""
    layers = _book_layers()
    samples = 4
    scale = 48.0 / size
    out = bytearray()
    for py in range(size):
        for px in range(size):
            acc = [0.0, 0.0, 0.0, 0.0]  # premultiplied sums
            for sy in range(samples):
                for sx in range(samples):
                    x = (px + (sx + 0.5) / samples) * scale
                    y = (py + (sy + 0.5) / samples) * scale
                    for hit, color in reversed(layers):
                        if hit(x, y):
                            alpha = color[3] / 255.0
                            acc[0] += color[0] * alpha
                            acc[1] += color[1] * alpha
                            acc[2] += color[2] * alpha
                            acc[3] += alpha
                            break
            n = samples * samples
            a = acc[3] / n
            if a == 0:
                out += b"\x00\x00\x00\x00"
            else:
                out += bytes((round(acc[0] / n / a), round(acc[1] / n / a), round(acc[2] / n / a), round(a * 255)))
    return encode_png(size, size, bytes(out))
