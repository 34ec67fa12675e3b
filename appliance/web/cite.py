"""An answer as HTML: its text escaped, each [n] that names a passage a link to the section it came from (the
passage itself shown on hover), each [n] that names none dropped."""

from __future__ import annotations

from markupsafe import Markup, escape

from ..assistant.citations import CITATION


def cite(answer: str, cited: list[dict], prefix: str = "source-") -> Markup:
    by_n = {c["n"]: c for c in cited}

    def link(m) -> str:
        source = by_n.get(int(m.group(1)))
        if source is None:
            return ""
        attrs = f'class="cite" href="#{prefix}{source["n"]}"'
        if source.get("url"):
            attrs = f'class="cite" href="{escape(source["url"])}" data-source="{prefix}{source["n"]}"'
        if source.get("text"):
            attrs += f' title="{escape(source["text"])}"'
        return f"<a {attrs}>[{source['n']}]</a>"

    return Markup(CITATION.sub(link, str(escape(answer or ""))))
