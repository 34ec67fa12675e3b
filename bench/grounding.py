#!/usr/bin/env python3
"""The grounding bench (issue 12): does the assistant find the article that answers a question, and does it
decline the questions the library cannot answer?

The questions are in bench/grounding_qa.yaml, each with the article path(s) that answer it, or none for a
question the library does not cover. The library is the Almanac Handbook (built here from docs/ with the
project's own ZIM builder, as install.sh does) and the shared test ZIMs, read in place, all searched together.

Two rows, on the same questions:

- Almanac: the passages of content.passages.find, through appliance.assistant.answer.find_sources (the call the
  assistant makes, with the configured `assistant.passages` and `assistant.min_coverage`). An article's rank is
  the place of its first passage.
- libzim: plain full-text search of the question's text in every archive (what a person typing the question
  into a Kiwix search box gets), the first hits of each archive taken in turn.

Reported: recall@1 and recall@5 (the right article among the first 1 / 5 articles), MRR of the right article,
the share of unanswerable questions declined (Almanac: below min_coverage, or no passages at all; libzim: no
hits), citation validity (over every question's passages or hits: the cited article exists and is HTML, and a
cited section id is in its page), and the p50 latency per question. Then a sweep of the two thresholds of the
decline rule (min_coverage alone, then with min_known, see appliance/assistant/library_words.py): for each pair,
the unanswerable questions declined and the recall@5 kept on the answerable ones (the right article found and the
question not declined). Last, the guard against fitting the thresholds to these few questions: 200 random halves,
the thresholds chosen on one half and measured on the other, for coverage alone and for the pair.

    PYTHONPATH=. python bench/grounding.py [--qa bench/grounding_qa.yaml] [--zim-dir DIR] [--config FILE]
                                           [--json OUT] [--verbose]
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import html.parser
import json
import os
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from appliance.assistant.answer import Settings, find_sources  # noqa: E402
from appliance.assistant.library_words import known_share  # noqa: E402
from appliance.config import load_config  # noqa: E402
from content import searchers  # noqa: E402
from content.zim_builder import build_zim  # noqa: E402

DEFAULT_QA = Path(__file__).with_name("grounding_qa.yaml")
DEFAULT_ZIM_DIR = ROOT.parent / "shared" / "testdata" / "zim"
SHARED_BOOKS = ("wikibooks_be_all_nopic_2017-02", "example")
HANDBOOK = "almanac-handbook"
TOP = 5
SWEEP = (0.0, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5, 0.55, 0.6, 0.7, 0.8, 1.0)
KNOWN_SWEEP = (0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 1.0)  # min_known; 1.0: coverage alone
GRID = tuple(i / 20 for i in range(21))  # the thresholds the held-out check may choose from
SPLITS = 200  # random halves of the questions in the held-out check
TARGET_RECALL5, TARGET_DECLINED = 0.9, 0.8
_CYRILLIC = re.compile("[\u0400-\u04ff]")


@dataclasses.dataclass
class Outcome:
    """One question through one system."""

    articles: list[tuple[str, str]]  # (book, path), best first, once each
    declined: bool  # at the configured threshold (libzim: no hit)
    seconds: float
    best_coverage: float | None = None  # Almanac: the best passage's coverage (None: no passages)
    known: float | None = None  # Almanac: the share of the question's words the library holds (library_words)
    citations: list[tuple[str, str, str]] = dataclasses.field(default_factory=list)  # book, path, anchor


def load_questions(path: Path) -> list[dict]:
    with open(path, encoding="utf-8") as f:
        data = yaml.safe_load(f)
    out = []
    for item in data["questions"]:
        answers = {(book, p) for book, paths in (item.get("answers") or {}).items() for p in paths}
        out.append({"q": item["q"].strip(), "answers": answers})
    return out


def open_library(zim_dir: Path, workdir: Path) -> list[tuple[str, object]]:
    """(name, Archive) pairs as the library names its books: the handbook built from docs/, then the shared ZIMs."""
    from libzim.reader import Archive

    handbook = workdir / f"{HANDBOOK}.zim"
    with _quiet_stdout():  # libzim's writer prints its progress on the process's stdout
        build_zim(
            ROOT / "docs",
            handbook,
            title="Almanac Handbook",
            name=HANDBOOK,
            description="How to use this Almanac box",
        )
    books = [(HANDBOOK, Archive(str(handbook)))]
    for name in SHARED_BOOKS:
        books.append((name, Archive(str(zim_dir / f"{name}.zim"))))
    return books


@contextlib.contextmanager
def _quiet_stdout():
    sys.stdout.flush()
    saved = os.dup(1)
    with open(os.devnull, "wb") as null:
        os.dup2(null.fileno(), 1)
    try:
        yield
    finally:
        os.dup2(saved, 1)
        os.close(saved)


def almanac(question: str, books, settings: Settings) -> Outcome:
    """The assistant's own call at the configured threshold, then once more without one for the passages a
    declined question would have had (the sweep needs them; the rule is find_sources' own: best coverage)."""
    t0 = time.perf_counter()
    sources, nearest = find_sources(question, books, settings)
    seconds = time.perf_counter() - t0
    if nearest is not None:
        sources, _ = find_sources(question, books, dataclasses.replace(settings, min_coverage=0.0))
    articles = list(dict.fromkeys((s["book"], s["path"]) for s in sources))
    best = max((s["coverage"] for s in sources), default=None)
    citations = [(s["book"], s["path"], _anchor(s["url"])) for s in sources]
    known = known_share(books, question)
    return Outcome(articles, nearest is not None or not sources, seconds, best, known, citations)


def _anchor(url: str) -> str:
    from urllib.parse import unquote

    return unquote(url.partition("#")[2])


def libzim_search(question: str, books) -> Outcome:
    """libzim's full-text search of the question as typed, in each archive; hits taken rank by rank in turn."""
    from libzim.search import Query

    t0 = time.perf_counter()
    per_book = []
    for name, archive in books:
        if not archive.has_fulltext_index:
            continue
        with searchers.fulltext(archive) as searcher:
            per_book.append([(name, p) for p in searcher.search(Query().set_query(question)).getResults(0, TOP)])
    seconds = time.perf_counter() - t0
    merged = [hits[rank] for rank in range(TOP) for hits in per_book if rank < len(hits)]
    articles = list(dict.fromkeys(merged))
    return Outcome(articles, not articles, seconds, citations=[(b, p, "") for b, p in articles[:TOP]])


class _Ids(html.parser.HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.ids: set[str] = set()

    def handle_starttag(self, tag, attrs):
        self.ids.update(v for k, v in attrs if k == "id" and v)


def citation_valid(books: dict, book: str, path: str, anchor: str, cache: dict) -> bool:
    """The cited article exists (through redirects), is HTML, and holds the cited section id."""
    key = (book, path)
    if key not in cache:
        try:
            item = books[book].get_entry_by_path(path).get_item()
            ids = None
            if item.mimetype.startswith("text/html"):
                parser = _Ids()
                parser.feed(bytes(item.content).decode("utf-8", "replace"))
                ids = parser.ids
        except KeyError:
            ids = None
        cache[key] = ids
    ids = cache[key]
    return ids is not None and (not anchor or anchor in ids)


def _exists(books: dict, book: str, path: str) -> bool:
    return book in books and books[book].has_entry_by_path(path)


def by_language(questions: list[dict], outcomes: list[Outcome]) -> str:
    """recall@5 and declined share per language of the question (Cyrillic letters: Belarusian)."""
    parts = []
    for lang, wanted in (("English", False), ("Belarusian", True)):
        pairs = [(q, o) for q, o in zip(questions, outcomes) if bool(_CYRILLIC.search(q["q"])) == wanted]
        answerable = [(q, o) for q, o in pairs if q["answers"]]
        unanswerable = [o for q, o in pairs if not q["answers"]]
        found = sum(rank_of(o, q["answers"]) is not None for q, o in answerable)
        declined = sum(o.declined for o in unanswerable)
        parts.append(
            f"{lang} recall@5 {found}/{len(answerable)} = {found / len(answerable):.3f}, "
            f"unanswerable declined {declined}/{len(unanswerable)}"
        )
    return "; ".join(parts)


def rank_of(outcome: Outcome, answers: set) -> int | None:
    for i, article in enumerate(outcome.articles[:TOP], start=1):
        if article in answers:
            return i
    return None


def summarize(questions: list[dict], outcomes: list[Outcome], books: dict) -> dict:
    answerable = [(q, o) for q, o in zip(questions, outcomes) if q["answers"]]
    unanswerable = [o for q, o in zip(questions, outcomes) if not q["answers"]]
    ranks = [rank_of(o, q["answers"]) for q, o in answerable]
    cache: dict = {}
    cited = [c for o in outcomes for c in o.citations]  # every question's passages (hits), declined or not
    valid = sum(citation_valid(books, *c, cache) for c in cited)
    return {
        "recall@1": sum(r == 1 for r in ranks) / len(ranks),
        "recall@5": sum(r is not None for r in ranks) / len(ranks),
        "mrr": sum(1 / r for r in ranks if r) / len(ranks),
        "declined": sum(o.declined for o in unanswerable) / len(unanswerable),
        "answerable_declined": sum(o.declined for _, o in answerable) / len(answerable),
        "recall@5_kept": sum(r is not None and not o.declined for r, (_, o) in zip(ranks, answerable)) / len(ranks),
        "citations": len(cited),
        "citation_validity": valid / len(cited) if cited else None,
        "p50_ms": statistics.median(o.seconds for o in outcomes) * 1000,
    }


def declined_by(o: Outcome, min_coverage: float, min_known: float) -> bool:
    """find_sources' rule (answer.covers) on the outcome's signals."""
    if o.best_coverage is None:
        return True
    if o.best_coverage >= min_coverage:
        return False
    return min_known >= 1 or o.known is None or o.known < min_known


def rates(pairs: list[tuple[dict, Outcome]], min_coverage: float, min_known: float) -> tuple[float, float, float]:
    """(unanswerable declined, answerable declined, recall@5 kept) of (question, outcome) pairs."""
    answerable = [(q, o) for q, o in pairs if q["answers"]]
    unanswerable = [o for q, o in pairs if not q["answers"]]
    return (
        sum(declined_by(o, min_coverage, min_known) for o in unanswerable) / len(unanswerable),
        sum(declined_by(o, min_coverage, min_known) for _, o in answerable) / len(answerable),
        sum(rank_of(o, q["answers"]) is not None and not declined_by(o, min_coverage, min_known) for q, o in answerable)
        / len(answerable),
    )


def sweep(questions: list[dict], outcomes: list[Outcome], min_known: float = 1.0) -> list[dict]:
    pairs = list(zip(questions, outcomes))
    rows = []
    for t in SWEEP:
        declined, answerable_declined, kept = rates(pairs, t, min_known)
        rows.append(
            {
                "min_coverage": t,
                "min_known": min_known,
                "declined": declined,
                "answerable_declined": answerable_declined,
                "recall@5_kept": kept,
            }
        )
    return rows


def held_out(questions: list[dict], outcomes: list[Outcome], with_known: bool, seed: int = 0) -> dict:
    """The guard against fitting the thresholds to these questions: SPLITS times, the questions are split in
    random halves (answerable and unanswerable alike); the thresholds are chosen on one half (the most recall
    kept among those meeting both targets there, else the best sum) and measured on the other."""
    import random

    rng = random.Random(seed)
    answerable = [(q, o) for q, o in zip(questions, outcomes) if q["answers"]]
    unanswerable = [(q, o) for q, o in zip(questions, outcomes) if not q["answers"]]
    candidates = [(c, k) for c in GRID for k in (GRID if with_known else (1.0,))]
    tested = []
    for _ in range(SPLITS):
        rng.shuffle(answerable)
        rng.shuffle(unanswerable)
        a, u = len(answerable) // 2, len(unanswerable) // 2
        train, test = answerable[:a] + unanswerable[:u], answerable[a:] + unanswerable[u:]
        scored = []
        for c, k in candidates:
            declined, _, kept = rates(train, c, k)
            met = declined >= TARGET_DECLINED and kept >= TARGET_RECALL5
            scored.append((met, kept if met else declined + kept, c, k))
        _, _, c, k = max(scored)
        declined, _, kept = rates(test, c, k)
        tested.append((declined, kept))
    return {
        "declined": statistics.mean(d for d, _ in tested),
        "recall@5_kept": statistics.mean(k for _, k in tested),
        "both_met": sum(d >= TARGET_DECLINED and k >= TARGET_RECALL5 for d, k in tested) / len(tested),
    }


def _ratio(a: float | None, b: float | None) -> str:
    if a is None or b is None or b == 0:
        return "—"
    return f"{a / b:.2f}x"


def print_tables(
    configured: tuple[float, float], almanac_row: dict, libzim_row: dict, sweep_rows: list[dict], counts
) -> None:
    n_all, n_answerable, n_unanswerable = counts
    print(
        f"\n{n_all} questions ({n_answerable} answerable, {n_unanswerable} unanswerable); "
        f"configured min_coverage {configured[0]}, min_known {configured[1]}\n"
    )
    print("| system | recall@1 | recall@5 | MRR | unanswerable declined | answerable declined "
          "| recall@5 kept | citations valid | p50 ms |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|")
    for name, row in (("Almanac passages", almanac_row), ("libzim full-text", libzim_row)):
        validity = "—" if row["citation_validity"] is None else f"{row['citation_validity']:.3f} ({row['citations']})"
        print(
            f"| {name} | {row['recall@1']:.3f} | {row['recall@5']:.3f} | {row['mrr']:.3f} | {row['declined']:.3f} "
            f"| {row['answerable_declined']:.3f} | {row['recall@5_kept']:.3f} | {validity} | {row['p50_ms']:.1f} |"
        )
    keys = ("recall@1", "recall@5", "mrr", "declined", "answerable_declined", "recall@5_kept")
    ratios = " | ".join(_ratio(almanac_row[k], libzim_row[k]) for k in keys)
    print(f"| ratio Almanac / libzim | {ratios} | — | {_ratio(almanac_row['p50_ms'], libzim_row['p50_ms'])} |")

    print(
        "\nthreshold sweep (Almanac; declined = best passage's coverage below min_coverage and the share of the"
        " question's words the library holds below min_known, or no passage; min_known 1.00 = coverage alone)\n"
    )
    print("| min_coverage | min_known | unanswerable declined | answerable declined | recall@5 kept | both targets |")
    print("|---|---|---|---|---|---|")
    for row in sweep_rows:
        chosen = (row["min_coverage"], row["min_known"])
        mark = " (configured)" if all(abs(a - b) < 1e-9 for a, b in zip(chosen, configured)) else ""
        met = row["declined"] >= TARGET_DECLINED and row["recall@5_kept"] >= TARGET_RECALL5
        print(
            f"| {row['min_coverage']:.2f}{mark} | {row['min_known']:.2f} | {row['declined']:.3f} "
            f"| {row['answerable_declined']:.3f} | {row['recall@5_kept']:.3f} | {'yes' if met else 'no'} |"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--qa", type=Path, default=DEFAULT_QA)
    parser.add_argument("--zim-dir", type=Path, default=DEFAULT_ZIM_DIR)
    parser.add_argument("--config", help="Almanac configuration file (default: the usual one, else defaults)")
    parser.add_argument("--json", type=Path, help="write every question's outcome and the tables here")
    parser.add_argument("--verbose", action="store_true", help="one line per question and system")
    args = parser.parse_args(argv)

    config = load_config(args.config)
    settings = Settings.from_config(config.get("assistant"))
    questions = load_questions(args.qa)
    with tempfile.TemporaryDirectory(prefix="grounding.") as work:
        library = open_library(args.zim_dir, Path(work))
        books = dict(library)
        missing = [f"{b}/{path}" for q in questions for b, path in q["answers"] if not _exists(books, b, path)]
        if missing:
            raise SystemExit(f"{args.qa}: answers name articles the library does not hold: {missing}")
        # Open every searcher once so the first question does not pay for it.
        find_sources("library warm up", library, settings)
        libzim_search("library warm up", library)

        ours = [almanac(q["q"], library, settings) for q in questions]
        base = [libzim_search(q["q"], library) for q in questions]
        almanac_row = summarize(questions, ours, books)
        libzim_row = summarize(questions, base, books)
        sweep_rows = [row for k in KNOWN_SWEEP for row in sweep(questions, ours, k)]
        sweep_rows = [r for r in sweep_rows if r["min_known"] == 1.0 or 0.3 <= r["min_coverage"] <= 0.5]
        checks = {"coverage alone": held_out(questions, ours, False), "with min_known": held_out(questions, ours, True)}

    if args.verbose:
        for q, o, b in zip(questions, ours, base):
            want = "unanswerable" if not q["answers"] else f"rank {rank_of(o, q['answers'])}/{rank_of(b, q['answers'])}"
            cov = "-" if o.best_coverage is None else f"{o.best_coverage:.3f}"
            top = o.articles[0][1] if o.articles else "-"
            print(f"{want:>14}  cov {cov:>5}  declined {o.declined!s:5}  top {top[:40]:40}  {q['q']}")
    n_answerable = sum(bool(q["answers"]) for q in questions)
    counts = (len(questions), n_answerable, len(questions) - n_answerable)
    print(f"configuration: {config.source}; passages {settings.passages}")
    print_tables((settings.min_coverage, settings.min_known), almanac_row, libzim_row, sweep_rows, counts)
    print(f"\nheld out ({SPLITS} random halves: thresholds chosen on one, measured on the other)\n")
    print("| rule | unanswerable declined | recall@5 kept | both targets met |")
    print("|---|---|---|---|")
    for name, row in checks.items():
        print(f"| {name} | {row['declined']:.3f} | {row['recall@5_kept']:.3f} | {row['both_met']:.2f} of the splits |")
    print(f"\nAlmanac by language (declined at {settings.min_coverage}): {by_language(questions, ours)}")
    if args.json:
        detail = [
            {
                "q": q["q"],
                "answers": sorted("/".join(a) for a in q["answers"]),
                "almanac": {**dataclasses.asdict(o), "rank": rank_of(o, q["answers"])},
                "libzim": {**dataclasses.asdict(b), "rank": rank_of(b, q["answers"])},
            }
            for q, o, b in zip(questions, ours, base)
        ]
        result = {
            "almanac": almanac_row,
            "libzim": libzim_row,
            "sweep": sweep_rows,
            "held_out": checks,
            "questions": detail,
        }
        args.json.write_text(json.dumps(result, ensure_ascii=False, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
