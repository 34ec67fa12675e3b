"""Open a ZIM file in a child process and report its metadata as JSON.

libzim can abort the whole process on a corrupt file, so the library never opens an unknown file in the
server's own process: it runs ``python -m content.zim_probe PATH`` and reads one JSON line back.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ZIM_MAGIC = b"ZIM\x04"
METADATA_KEYS = ("Title", "Description", "Language", "Creator", "Publisher", "Date", "Tags", "Name", "Flavour")
PROBE_TIMEOUT_S = 60
MAX_REDIRECTS = 32


class ProbeError(Exception):
    """A file that is not a usable ZIM archive; the message is one line for the user."""


def _text(archive, key: str) -> str:
    try:
        return bytes(archive.get_metadata(key)).decode("utf-8", "replace").strip()
    except (RuntimeError, KeyError):
        return ""


def probe_in_process(path: str) -> dict:
    from libzim.reader import Archive  # imported here: the parent process may not need libzim at all

    with open(path, "rb") as f:
        if f.read(4) != ZIM_MAGIC:
            raise ProbeError("not a ZIM file (bad magic number)")
    archive = Archive(path)
    main_path = ""
    if archive.has_main_entry:
        entry = archive.main_entry
        # Resolve the main entry so a dangling main page is caught now, not on the first visitor.
        for _ in range(MAX_REDIRECTS):
            if not entry.is_redirect:
                break
            entry = entry.get_redirect_entry()
        else:
            raise ProbeError("the main page is a redirect loop")
        entry.get_item()
        main_path = entry.path
    info = {key.lower(): _text(archive, key) for key in METADATA_KEYS}
    info.update(
        uuid=str(archive.uuid),
        size=archive.filesize,
        article_count=archive.article_count,
        media_count=archive.media_count,
        entry_count=archive.entry_count,
        main_path=main_path,
        has_fulltext_index=bool(archive.has_fulltext_index),
        has_title_index=bool(archive.has_title_index),
        new_namespace_scheme=bool(archive.has_new_namespace_scheme),
        illustration_48=bool(archive.has_illustration(48)),
    )
    return info


def probe(path: str | Path) -> dict:
    """Metadata of a ZIM file, read in a separate process; raises ProbeError with a one-line reason."""
    path = Path(path)
    if not path.is_file():
        raise ProbeError(f"{path}: no such file")
    try:
        done = subprocess.run(
            [sys.executable, "-m", "content.zim_probe", str(path)],
            capture_output=True,
            text=True,
            timeout=PROBE_TIMEOUT_S,
            cwd=Path(__file__).resolve().parents[1],
        )
    except subprocess.TimeoutExpired:
        raise ProbeError(f"{path.name}: opening it took over {PROBE_TIMEOUT_S} s") from None
    lines = done.stdout.strip().splitlines()
    if done.returncode == 0 and lines:
        return json.loads(lines[-1])
    if done.returncode == 3 and lines:
        raise ProbeError(f"{path.name}: {json.loads(lines[-1])['error']}")
    last = (done.stderr.strip().splitlines() or [f"exit code {done.returncode}"])[-1]
    raise ProbeError(f"{path.name}: libzim could not open it ({last[:200]})")


def deep_check(path: str | Path, timeout_s: float = 3600) -> tuple[bool, str]:
    """libzim's full Archive.check() (checksum, dirents, clusters) in a child process: (ok, message)."""
    try:
        done = subprocess.run(
            [sys.executable, "-m", "content.zim_probe", "--check", str(path)],
            capture_output=True,
            text=True,
            timeout=timeout_s,
            cwd=Path(__file__).resolve().parents[1],
        )
    except subprocess.TimeoutExpired:
        return False, f"the check took over {timeout_s:.0f} s"
    lines = done.stdout.strip().splitlines()
    if lines and done.returncode in (0, 3):
        result = json.loads(lines[-1])
        return bool(result.get("ok")), result.get("error", "archive is consistent")
    last = (done.stderr.strip().splitlines() or [f"exit code {done.returncode}"])[-1]
    return False, f"libzim crashed while checking ({last[:200]})"


def main(argv: list[str]) -> int:
    if argv and argv[0] == "--check":
        from libzim.reader import Archive

        try:
            ok = bool(Archive(argv[1]).check())
            print(json.dumps({"ok": ok} if ok else {"ok": False, "error": "libzim's integrity check failed"}))
            return 0
        except Exception as e:
            print(json.dumps({"ok": False, "error": (str(e).splitlines() or [type(e).__name__])[0][:300]}))
            return 3
    try:
        print(json.dumps(probe_in_process(argv[0])))
        return 0
    except Exception as e:  # any failure of a foreign file is reported, never raised
        message = str(e).splitlines()[0] if str(e) else type(e).__name__
        print(json.dumps({"error": message[:300]}))
        return 3


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
