"""Which passages a question gets, over the shared Belarusian Wikibooks: a first question the library does not
cover is declined (the best passage's coverage, or else the share of the question's words the library holds:
appliance/assistant/library_words.py), and a follow-up adds at most follow_up_passages new passages to those
its conversation holds."""

from __future__ import annotations

import dataclasses

import pytest

from almanac_testing import zim
from appliance.assistant.answer import Settings, find_sources
from appliance.assistant.library_words import known_share

GREETING = "Як павітацца і назваць сябе па-ўкраінску?"  # answered by the Ukrainian lesson, in other words
DRANIKI = "Як прыгатаваць дранікі з бульбы?"  # potato pancakes: the cookbook has no such recipe
RULE = Settings(url="", passages=5, min_coverage=0.4, min_known=0.75)


def _books(*names: str) -> list[tuple[str, object]]:
    from libzim.reader import Archive

    return [(name, Archive(str(zim(name)))) for name in names]


def test_a_wordy_question_in_the_librarys_words_is_answered_where_coverage_alone_declined_it():
    books = _books("wikibooks_be_all_nopic_2017-02")
    sources, nearest = find_sources(GREETING, books, dataclasses.replace(RULE, min_coverage=0))
    assert max(s["coverage"] for s in sources) < RULE.min_coverage  # coverage alone would decline it ...
    assert known_share(books, GREETING) >= RULE.min_known  # ... but the library knows its words
    assert find_sources(GREETING, books, dataclasses.replace(RULE, min_known=1.0))[1] is not None
    sources, nearest = find_sources(GREETING, books, RULE)
    assert nearest is None and sources and sources[0]["book"] == "wikibooks_be_all_nopic_2017-02"


def test_a_question_about_what_the_library_never_names_is_still_declined():
    books = _books("wikibooks_be_all_nopic_2017-02")
    assert known_share(books, DRANIKI) < RULE.min_known
    sources, nearest = find_sources(DRANIKI, books, RULE)
    assert sources == [] and nearest and all(n["url"].startswith("/content/") for n in nearest)
    # A follow-up is never declined: its words lean on the conversation.
    sources, nearest = find_sources(DRANIKI, books, RULE, history=[{"q": "Што такое квас?", "a": "Напой [1]."}])
    assert nearest is None and sources


def test_without_a_full_text_index_coverage_alone_decides():
    books = _books("small_nons")  # no full-text index
    assert known_share(books, GREETING) is None
    assert known_share(_books("wikibooks_be_all_nopic_2017-02"), "the of") is None  # no keywords at all


def test_a_follow_up_adds_at_most_follow_up_passages_new_passages_to_those_the_conversation_holds():
    books = _books("wikibooks_be_all_nopic_2017-02")
    settings = dataclasses.replace(RULE, passages=8, follow_up_passages=1)
    first, _ = find_sources("Як у эспэранта ўтвараецца множны лік назоўнікаў?", books, settings)
    history = [{"q": "Як у эспэранта ўтвараецца множны лік назоўнікаў?", "a": "Канчатак -j [1].", "passages": first}]
    question = "А як утвараецца вінавальны склон?"
    alone, _ = find_sources(question, books, dataclasses.replace(settings, follow_up_passages=20), history)
    held = {(p["book"], p["path"], p["text"]) for p in first}
    assert sum((p["book"], p["path"], p["text"]) not in held for p in alone) > 1  # more than one would be new
    got, _ = find_sources(question, books, settings, history)
    new = [p for p in got if (p["book"], p["path"], p["text"]) not in held]
    assert len(new) == 1 and [p["n"] for p in got] == list(range(1, len(got) + 1))
    kept = [p["text"] for p in alone if (p["book"], p["path"], p["text"]) in held]  # the held ones all stay
    assert [p["text"] for p in got if (p["book"], p["path"], p["text"]) in held] == kept


def test_bad_decline_and_follow_up_settings_name_the_key(tmp_path):
    from appliance.config import ConfigError, load_config

    path = tmp_path / "config.yaml"
    for key, value in (("min_known", 1.5), ("min_known", -0.1), ("follow_up_passages", 0), ("follow_up_passages", 21)):
        path.write_text(f"assistant:\n  {key}: {value}\n")
        with pytest.raises(ConfigError) as e:
            load_config(path, env={})
        assert e.value.key == f"assistant.{key}"
    path.write_text("assistant:\n  min_known: 1\n  follow_up_passages: 20\n")
    section = load_config(path, env={}).get("assistant")
    assert Settings.from_config(section).min_known == 1.0 and Settings.from_config(section).follow_up_passages == 20
