"""How much of a question's vocabulary the library holds at all: the assistant's second signal for declining.

The best passage's coverage alone does not tell a long, wordy question that the library answers ("how do I get
rid of a book I no longer need?", whose best passage holds a third of its words) from a short one it cannot
answer ("how many moons does Jupiter have?"). What does: a question the library cannot answer is about things
the library never names. `known_share` is the share of the question's keywords that libzim's full-text index of
at least one book in scope finds at all; bench/grounding.py measures the pair of thresholds.
"""

from __future__ import annotations

from content import passages, searchers


def known_share(books: list[tuple[str, object]], question: str) -> float | None:
    """The share (0-1) of the question's keywords found in some book's full-text index; None when no book in
    scope has one (then only coverage can decide)."""
    from libzim.search import Query

    indexed = [archive for _, archive in books if getattr(archive, "has_fulltext_index", False)]
    words = passages.keywords(question)
    if not indexed or not words:
        return None
    known = 0
    for word in words:
        for archive in indexed:
            with searchers.fulltext(archive) as searcher:
                if searcher.search(Query().set_query(word)).getEstimatedMatches() > 0:
                    known += 1
                    break
    return known / len(words)
