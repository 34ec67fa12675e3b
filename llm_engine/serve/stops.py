"""Stop strings over streamed text: hold back what could be the start of a stop string."""

from __future__ import annotations


class StopFilter:
    """Feed text deltas in; get back the text safe to send and whether a stop string ended it.

    A stop string can span several tokens, so the tail of the text that is a prefix of some
    stop string is held back until the next delta shows whether the stop string completes.
    The stop string itself and anything after it are never returned.
    """

    def __init__(self, stops: list[str]):
        self.stops = [s for s in stops if s]
        self.held = ""

    def feed(self, text: str) -> tuple[str, bool]:
        buf = self.held + text
        if not self.stops:
            return buf, False
        found = [i for i in (buf.find(s) for s in self.stops) if i >= 0]
        if found:
            self.held = ""
            return buf[: min(found)], True
        keep = 0
        for s in self.stops:
            for k in range(min(len(s) - 1, len(buf)), keep, -1):
                if buf.endswith(s[:k]):
                    keep = k
                    break
        self.held = buf[len(buf) - keep :] if keep else ""
        return buf[: len(buf) - keep], False

    def flush(self) -> str:
        """What is still held back when generation ends without a stop string."""
        rest, self.held = self.held, ""
        return rest
