"""The passages of the library that best answer a question: what the assistant reads before it writes.

A question in plain words rarely matches libzim's full-text query as a whole (it joins every word with AND), so
the question's keywords are searched together first and then one by one; the articles found are cut into
paragraphs and the paragraphs ranked by BM25 over the question's keywords. Everything stays on the box.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass
from html.parser import HTMLParser

from . import searchers
from .search import QueryError

# Words that say nothing about what is asked; libzim drops English stopwords itself, but a keyword that no
# article holds would empty an AND query, and these are never the point of a question.
STOPWORDS = frozenset(
    """
a about above after again against all am an and any are as at be because been before being below between both
but by can could did do does doing down during each few for from further had has have having he her here hers
him his how i if in into is it its itself just me more most my no nor not now of off on once only or other our
out over own same she should so some such than that the their them then there these they this those through to
too under until up very was we were what when where which while who whom why will with would you your yours
tell explain describe please know give show mean means find
што такое як дзе калі хто чаму колькі які якая якое якія ці гэта ёсць ёсьць і й у ў на з са пра для па мне можна
что как где когда кто почему сколько какой какая какое какие ли это есть и в во с со о об про для по мне можно
""".split()
)

_SPACE = re.compile(r"\s+")
_WORD = re.compile(r"\w+")
_SENTENCE_END = re.compile(r"[.!?。！？](?:\s|$)")

# Elements that end a paragraph, and those whose whole subtree is page furniture rather than the article.
BLOCKS = frozenset(
    "p li dd dt h1 h2 h3 h4 h5 h6 tr td th blockquote pre section article div br table ul ol figcaption caption".split()
)
HEADINGS = frozenset("h1 h2 h3 h4 h5 h6 dt caption".split())
SKIPPED = frozenset(
    "head title script style noscript template svg nav header footer aside form button select math".split()
)
# MediaWiki and mwoffliner furniture, matched against id and class: menus, edit links, reference lists, infobox
# navigation, table of contents, category links.
_FURNITURE = re.compile(
    r"navigation|navbox|footer|catlinks|mw-panel|sidebar|\btoc\b|noprint|editsection|"
    r"mw-jump|siteNotice|printfooter|reflist|references|mw-indicators|hatnote",
    re.I,
)
_VOID = frozenset("area base br col embed hr img input link meta source track wbr".split())


class _Paragraphs(HTMLParser):
    """Collects an article's text a block at a time, as (text, is_heading, anchor), leaving out page furniture.

    `anchor` is the id of the section the block is in: of its heading, or of an element inside that heading
    (MediaWiki's <span class="mw-headline" id=...>), "" before the first heading that has one.
    """

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.blocks: list[tuple[str, bool, str]] = []
        self._text: list[str] = []
        self._heading = False
        self._anchor = ""
        self._skip: list[str] = []  # open tags of the subtree being skipped

    def handle_starttag(self, tag, attrs):
        if self._skip:
            if tag not in _VOID:
                self._skip.append(tag)
            return
        marks = " ".join(v for k, v in attrs if k in ("id", "class", "role") and v)
        if tag in SKIPPED or (marks and _FURNITURE.search(marks)):
            if tag not in _VOID:
                self._skip.append(tag)
            return
        if tag in BLOCKS:
            self._flush()
            self._heading = tag in HEADINGS
            if tag in HEADINGS:
                self._anchor = ""  # a new section: its own id, or none
        element_id = next((v for k, v in attrs if k == "id" and v), None)
        if self._heading and element_id and not self._anchor:
            self._anchor = element_id

    def handle_endtag(self, tag):
        if self._skip:
            # Pop to the matching open tag: HTML in the wild leaves some tags unclosed.
            if tag in self._skip:
                while self._skip.pop() != tag:
                    pass
            return
        if tag in BLOCKS:
            self._flush()
            self._heading = False

    def handle_data(self, data):
        if not self._skip:
            self._text.append(data)

    def _flush(self):
        text = _SPACE.sub(" ", "".join(self._text)).strip()
        self._text = []
        if text:
            self.blocks.append((text, self._heading, self._anchor))

    def close(self):
        super().close()
        self._flush()


PASSAGE_MIN, PASSAGE_MAX = 80, 700  # characters: shorter paragraphs join the next one, longer ones are cut
HEADING_MAX = 120
BM25_K1, BM25_B = 1.2, 0.75
CONTEXT_WORDS = 4  # keywords taken from the conversation so far ...
CONTEXT_WEIGHT = 0.3  # ... counting for less than the question's own, so a change of subject is followed
PREFIX = 5  # words match on their first 5 letters: "oceans" finds "ocean", "volcanic" finds "volcano"


@dataclass(frozen=True)
class Passage:
    book: str
    path: str
    title: str
    text: str
    score: float
    coverage: float = 1.0  # the share of the question's keywords in the passage, rare ones weighing more
    anchor: str = ""  # the id of the article's section the passage comes from ("" for the top)


def keywords(question: str) -> list[str]:
    """The question's words worth searching for, in order, without repeats."""
    seen, out = set(), []
    for w in _WORD.findall(question.lower()):
        if w in STOPWORDS or (len(w) < 2 and not w.isdigit()) or w in seen:
            continue
        seen.add(w)
        out.append(w)
    return out


def paragraphs(page: bytes) -> list[str]:
    """An HTML page's prose, one string per paragraph, joined or cut to passage length.

    Blocks without a sentence in them (menus, link lists) are not prose; a heading is kept only as the start
    of the paragraph that follows it.
    """
    return [text for text, _ in sections(page)]


def sections(page: bytes) -> list[tuple[str, str]]:
    """paragraphs(page), each with the anchor of the section it starts in (see _Paragraphs)."""
    parser = _Paragraphs()
    parser.feed(page.decode("utf-8", "replace"))
    parser.close()
    out, pending, pending_anchor, heading = [], "", "", ""
    for block, is_heading, anchor in parser.blocks:
        if is_heading:
            heading = block if len(block) <= HEADING_MAX else ""  # opens the next paragraph
            continue
        if not _SENTENCE_END.search(block):
            continue  # a menu, a list of links, a caption: not prose
        text = " ".join(t for t in (pending, heading, block) if t)
        anchor = pending_anchor if pending else anchor
        heading = ""
        if len(text) < PASSAGE_MIN:
            pending, pending_anchor = text, anchor  # a short paragraph joins the next one
            continue
        out.extend((piece, anchor) for piece in _cut(text))
        pending = ""
    if pending:
        out.append((pending, pending_anchor))
    return out


def _cut(text: str) -> list[str]:
    """Split a long paragraph at sentence ends so each piece stays under PASSAGE_MAX."""
    if len(text) <= PASSAGE_MAX:
        return [text]
    pieces, current = [], ""
    for sentence in re.split(r"(?<=[.!?。])\s+", text):
        while len(sentence) > PASSAGE_MAX:  # one endless sentence: cut at a space
            cut = sentence.rfind(" ", 0, PASSAGE_MAX)
            cut = cut if cut > PASSAGE_MAX // 2 else PASSAGE_MAX
            if current:
                pieces.append(current)
                current = ""
            pieces.append(sentence[:cut].strip())
            sentence = sentence[cut:].strip()
        if current and len(current) + 1 + len(sentence) > PASSAGE_MAX:
            pieces.append(current)
            current = sentence
        else:
            current = f"{current} {sentence}".strip()
    if current:
        pieces.append(current)
    return pieces


def candidate_articles(archives: list[tuple[str, object]], words: list[str], limit: int) -> list[tuple[str, str]]:
    """(book, path) of up to `limit` articles: those holding every keyword first, then those holding most."""
    from libzim.search import Query

    found: Counter = Counter()
    order: dict[tuple[str, str], int] = {}

    def search(archive, name: str, pattern: str, weight: int) -> None:
        with searchers.fulltext(archive) as searcher:
            for rank, path in enumerate(searcher.search(Query().set_query(pattern)).getResults(0, limit)):
                key = (name, path)
                found[key] += weight
                order.setdefault(key, len(order) + rank)

    def titled(archive, name: str, stem: str) -> None:
        with searchers.titles(archive) as searcher:
            for rank, path in enumerate(searcher.suggest(stem).getResults(0, limit)):
                key = (name, path)
                found[key] += 1
                order.setdefault(key, len(order) + rank)

    for name, archive in archives:
        if archive.has_fulltext_index:
            search(archive, name, " ".join(words), len(words) + 1)
            if len(words) > 1:
                for w in words:
                    search(archive, name, w, 1)
        if archive.has_title_index:
            # libzim stems English words only: "каву" finds no article about "кава". A title that holds a word
            # starting like the question's word without its ending ("кав") is a candidate too.
            for w in words:
                if not w.isascii() and len(w) > 3:
                    titled(archive, name, w[: max(3, len(w) - (1 if len(w) <= 5 else 2))])
    ranked = sorted(found, key=lambda key: (-found[key], order[key]))
    return ranked[:limit]


def _stem(word: str) -> str:
    """A question word as it is matched. Outside ASCII (no stemmer in libzim; Slavic words change their ending:
    "кава", "каву", "кавай") it is a root that a text word must start with: the word less its last letter, 3 or
    4 letters long. bench/grounding.py measured it (Belarusian recall@5 0.69 -> 0.94 with the title search)."""
    return word[:PREFIX] if word.isascii() else word[: max(3, min(4, len(word) - 1))]


def _stems(text: str) -> list[str]:
    """A text's words as they are matched: ASCII ones on their first letters, the others whole (see _stem)."""
    return [w[:PREFIX] if w.isascii() else w for w in _WORD.findall(text.lower())]


def _counts(words: Counter, terms) -> dict[str, int]:
    """How often each question term occurs among `words` (see _stem: a root matches the words it starts)."""
    out = {}
    for t in terms:
        out[t] = words[t] if t.isascii() else sum(c for w, c in words.items() if w.startswith(t))
    return out


def find(
    archives: list[tuple[str, object]],
    question: str,
    k: int = 5,
    articles: int = 8,
    per_article: int = 2,
    context: str = "",
) -> list[Passage]:
    """The k passages of (book name, Archive) pairs that best answer `question`, best first.

    At most `per_article` passages come from one article, so an answer can draw on several sources.
    `context` is what was asked before in the same conversation: its keywords also search and rank, at a
    lower weight, so "how tall is it?" after a question on Mount Etna still finds Etna.
    """
    question = (question or "").strip()
    if not question:
        raise QueryError("empty question")
    if len(question) > 2000:
        raise QueryError("question longer than 2000 characters")
    words = keywords(question)
    if not words:
        raise QueryError("the question has no words to look up")
    extra = [w for w in keywords(context) if w not in words][:CONTEXT_WORDS]
    by_name = dict(archives)
    pieces: list[tuple[str, str, str, str, str]] = []  # book, path, title, text, anchor
    for name, path in candidate_articles(archives, words + extra, articles):
        try:
            entry = by_name[name].get_entry_by_path(path)
            item = entry.get_item()
            if not item.mimetype.startswith("text/html"):
                continue
            page = bytes(item.content)
        except (KeyError, RuntimeError):  # listed by the index but gone or unreadable: skip it
            continue
        title = entry.title or path
        pieces.extend((name, path, title, text, anchor) for text, anchor in sections(page))
    if not pieces:
        return []
    return _rank(pieces, [_stem(w) for w in words], [_stem(w) for w in extra], k, per_article)


def _rank(
    pieces: list[tuple[str, str, str, str, str]], asked: list[str], context: list[str], k: int, per_article: int
) -> list[Passage]:
    """BM25 over the pieces; the question's own terms count fully, the conversation's at CONTEXT_WEIGHT."""
    asked = list(dict.fromkeys(asked))  # "volcano" and "volcanoes" are one term
    weights = {t: 1.0 for t in asked}
    for t in context:
        weights.setdefault(t, CONTEXT_WEIGHT)
    words = [Counter(_stems(text)) for _, _, _, text, _ in pieces]
    lengths = [sum(d.values()) for d in words]
    docs = [_counts(d, weights) for d in words]
    avg = sum(lengths) / len(lengths) or 1.0
    n = len(docs)
    idf = {
        t: w * math.log(1 + (n - df + 0.5) / (df + 0.5))
        for t, w in weights.items()
        for df in [sum(1 for d in docs if d[t])]
    }
    asked_idf = sum(idf[t] for t in asked) or 1.0
    scored = []
    for (book, path, title, text, anchor), doc, length in zip(pieces, docs, lengths):
        score = sum(
            idf[t] * doc[t] * (BM25_K1 + 1) / (doc[t] + BM25_K1 * (1 - BM25_B + BM25_B * length / avg))
            for t in weights
            if doc[t]
        )
        if score > 0:
            # A passage of an article named for what is asked is likelier to answer it.
            title_terms = _counts(Counter(_stems(title)), asked)
            score *= 1 + 0.5 * sum(title_terms[t] > 0 for t in asked) / len(asked)
            coverage = sum(idf[t] for t in asked if doc[t]) / asked_idf
            scored.append(Passage(book, path, title, text, round(score, 4), round(coverage, 3), anchor))
    scored.sort(key=lambda p: -p.score)
    out, taken = [], Counter()
    for p in scored:
        if taken[(p.book, p.path)] < per_article:
            out.append(p)
            taken[(p.book, p.path)] += 1
            if len(out) == k:
                break
    return out
