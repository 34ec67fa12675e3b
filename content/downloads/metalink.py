"""Metalink v4 (RFC 5854, the ``.meta4`` Kiwix publishes beside each ZIM): the file's size, SHA-256 and
mirrors, most preferred first. Also the one-line ``.sha256`` sidecar (``HEX  NAME``)."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from urllib.parse import urljoin

NS = "{urn:ietf:params:xml:ns:metalink}"
_HEX64 = re.compile(r"^[0-9a-fA-F]{64}$")


class MetalinkError(Exception):
    """A metalink or sidecar that cannot be used; one line."""


@dataclass(frozen=True)
class Metalink:
    name: str
    size: int | None
    sha256: str | None
    urls: tuple[str, ...]  # priority order (RFC 5854: a lower priority number is preferred)


def parse_metalink(body: bytes, base_url: str = "") -> Metalink:
    try:
        root = ET.fromstring(body)
    except ET.ParseError as e:
        raise MetalinkError(f"not a metalink ({e})") from None
    if root.tag != f"{NS}metalink":
        raise MetalinkError(f"not a Metalink v4 document (root element {root.tag!r})")
    files = root.findall(f"{NS}file")
    if len(files) != 1:
        raise MetalinkError(f"expected one <file> in the metalink, found {len(files)}")
    f = files[0]
    size_text = (f.findtext(f"{NS}size") or "").strip()
    if size_text and not size_text.isdigit():
        raise MetalinkError(f"metalink size {size_text!r} is not a number")
    sha256 = None
    for h in f.findall(f"{NS}hash"):
        if (h.get("type") or "").lower() == "sha-256":
            sha256 = check_sha256((h.text or "").strip(), "metalink sha-256")
    ranked = []
    for order, u in enumerate(f.findall(f"{NS}url")):
        href = (u.text or "").strip()
        if not href.startswith(("http://", "https://")) and base_url:
            href = urljoin(base_url, href)
        if not href.startswith(("http://", "https://")):
            continue
        try:
            priority = int(u.get("priority", "999999"))
        except ValueError:
            priority = 999999
        ranked.append((priority, order, href))
    if not ranked:
        raise MetalinkError("the metalink lists no http(s) mirror")
    return Metalink(
        name=f.get("name", ""),
        size=int(size_text) if size_text else None,
        sha256=sha256,
        urls=tuple(href for _, _, href in sorted(ranked)),
    )


def parse_sidecar(text: str) -> str:
    """The digest of a ``.sha256`` file: ``HEX`` or ``HEX  NAME`` (the first line)."""
    first = (text.strip().splitlines() or [""])[0].split()
    if not first:
        raise MetalinkError("the .sha256 file is empty")
    return check_sha256(first[0], ".sha256 file")


def check_sha256(value: str, what: str = "sha256") -> str:
    if not _HEX64.match(value):
        raise MetalinkError(f"{what} {value[:80]!r} is not 64 hex digits")
    return value.lower()


def write_metalink(name: str, size: int, sha256: str, urls: list[str]) -> bytes:
    """A Metalink v4 document for one file (used by export and by the tests' file server)."""
    root = ET.Element("metalink", xmlns=NS[1:-1])
    f = ET.SubElement(root, "file", name=name)
    ET.SubElement(f, "size").text = str(size)
    ET.SubElement(f, "hash", type="sha-256").text = sha256
    for i, url in enumerate(urls, 1):
        ET.SubElement(f, "url", priority=str(i)).text = url
    return b'<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root)
