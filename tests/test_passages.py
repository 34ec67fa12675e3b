"""content.passages: the library's passages that answer a question, from real archives built here and shared."""

from __future__ import annotations

import pytest
from libzim.reader import Archive

from content import passages
from content.search import QueryError
from content.zim_builder import build_zim

from almanac_testing import zim

ARTICLES = {
    "index.md": "# Facts\n\nA small book of [volcanoes](volcanoes.md), [bees](bees.md) and [bread](bread.md).\n",
    "volcanoes.md": """# Volcanoes

A volcano is an opening in the crust of a planet where molten rock, called magma, reaches the surface.

## In Europe

Mount Etna, on the island of Sicily, is the most active volcano in Europe. It has erupted hundreds of times
since records began, and its slopes are covered in vineyards.

## Types

Shield volcanoes have gentle slopes built by runny lava. Stratovolcanoes are steep cones of ash and lava.
""",
    "bees.md": """# Honey bees

Honey bees make honey from the nectar of flowers and store it in wax combs. A colony has one queen, a few
hundred drones and thousands of workers.

Workers dance to tell the others where flowers are: the angle of the dance points to the food.
""",
    "bread.md": """# Bread

Bread is made of flour, water, salt and yeast. The yeast turns sugars into gas, which makes the dough rise.
Bakers near volcanoes once baked bread in the warm ground.
""",
}


@pytest.fixture(scope="module")
def book(tmp_path_factory):
    src = tmp_path_factory.mktemp("src")
    for name, text in ARTICLES.items():
        (src / name).write_text(text)
    out = tmp_path_factory.mktemp("zim") / "facts.zim"
    build_zim(src, out, name="facts", title="Facts", language="eng")
    archive = Archive(out)
    yield [("facts", archive)]


def test_keywords_drop_stopwords_and_repeats():
    assert passages.keywords("What is the most active volcano in Europe? The volcano!") == [
        "active",
        "volcano",
        "europe",
    ]
    assert passages.keywords("Як падрыхтаваць боршч?") == ["падрыхтаваць", "боршч"]  # "як" (how) says nothing
    assert passages.keywords("is it a?") == []


def test_paragraphs_leave_out_page_furniture_and_keep_headings_with_their_text():
    page = b"""<html><head><title>Title words</title><style>p{color:red}</style></head><body>
    <nav><ul><li><a>Main page</a></li><li><a>Random article</a></li></ul></nav>
    <div id="mw-navigation">Jump to navigation. Menu.</div>
    <h2>Eruptions <span class="mw-editsection">[edit]</span></h2>
    <p>Mount Etna has erupted <b>hundreds</b> of times &amp; keeps erupting today, more than any other in Europe.</p>
    <script>var x = "Not text.";</script>
    <ul><li>Catania</li><li>Messina</li></ul>
    <p>Short one.</p><p>Another short sentence follows it here.</p>
    <footer>Text is available under a licence. Privacy policy.</footer>
    </body></html>"""
    got = passages.paragraphs(page)
    assert got == [
        "Eruptions Mount Etna has erupted hundreds of times & keeps erupting today, more than any other in Europe.",
        "Short one. Another short sentence follows it here.",
    ]


def test_long_paragraphs_are_cut_at_sentence_ends():
    sentence = "The lava flowed down the mountain for many days and nights without stopping at all. "
    page = f"<p>{sentence * 30}</p>".encode()
    got = passages.paragraphs(page)
    assert len(got) > 1
    assert all(len(p) <= passages.PASSAGE_MAX for p in got)
    assert all(p.endswith("at all.") for p in got)
    assert " ".join(got) == (sentence * 30).strip()


def test_the_passage_that_answers_comes_first(book):
    found = passages.find(book, "Which volcano in Europe is the most active?", k=3)
    assert found[0].path == "volcanoes" and "Etna" in found[0].text
    assert found[0].title == "Volcanoes"
    assert [p.score for p in found] == sorted((p.score for p in found), reverse=True)


def test_a_word_no_article_holds_does_not_empty_the_answer(book):
    # libzim ANDs every word: "glitter" is nowhere, so the words are also looked up one by one.
    found = passages.find(book, "Do bees dance with glitter?", k=2)
    assert found and found[0].path == "bees" and "dance" in found[0].text


def test_k_and_per_article_limits(book):
    found = passages.find(book, "volcano lava volcanoes bread", k=5, per_article=1)
    paths = [p.path for p in found]
    assert len(paths) == len(set(paths)) == 3  # one passage from each page that mentions volcanoes
    assert paths[0] == "volcanoes" and set(paths) == {"volcanoes", "bread", "index"}
    assert len(passages.find(book, "volcano lava", k=1)) == 1


def test_nothing_found_is_an_empty_list(book):
    assert passages.find(book, "quantum chromodynamics") == []


@pytest.mark.parametrize(
    "question, message", [("", "empty"), ("   ", "empty"), ("x" * 2001, "longer"), ("is it the?", "no words")]
)
def test_bad_questions(book, question, message):
    with pytest.raises(QueryError, match=message):
        passages.find(book, question)


def test_belarusian_words_are_found_whatever_their_ending():
    be = [("be", Archive(zim("wikibooks_be_all_nopic_2017-02")))]
    # "каву" (accusative): libzim finds no article for it; its root "кав" finds the one about coffee ("Кава").
    found = passages.find(be, "Як зварыць каву?", k=3)
    assert found and found[0].path == "Кава.html"
    # "квасу" (genitive) reaches the recipe for kvass through its title.
    assert "Рэцэпт:Квас.html" in [p.path for p in passages.find(be, "Колькі цукру трэба для квасу?", k=5)]


def test_shared_archives_english_and_belarusian():
    example = [("example", Archive(zim("example")))]
    found = passages.find(example, "How do I add zim files to the library?", k=3)
    assert found and all(p.book == "example" for p in found)
    assert "zim" in found[0].text.lower()
    assert not any("Privacy policy" in p.text or "Jump to navigation" in p.text for p in found)
    be = [("be", Archive(zim("wikibooks_be_all_nopic_2017-02")))]
    found = passages.find(be, "Італьянская мова", k=3)
    assert found and all("мов" in p.text.lower() for p in found)


def test_archives_without_a_fulltext_index_are_skipped():
    assert passages.find([("small_nons", Archive(zim("small_nons")))], "test article") == []


def test_a_follow_up_question_is_read_in_the_light_of_the_conversation(book):
    assert passages.find(book, "How many of them live there?", k=1) == []  # no article speaks of that alone
    follow_up = passages.find(book, "How many of them live there?", k=1, context="Tell me about honey bees")
    assert follow_up[0].path == "bees" and "thousands of workers" in follow_up[0].text
    # The conversation only adds words at a lower weight: a change of subject is followed.
    assert (
        passages.find(book, "Which volcano is most active?", k=1, context="Tell me about honey bees")[0].path
        == "volcanoes"
    )
    assert passages.find(book, "What is bread made of?", k=1, context="Tell me about honey bees")[0].path == "bread"


def test_a_passage_knows_its_section_and_how_much_of_the_question_it_covers(book):
    found = passages.find(book, "Which volcano in Europe is the most active?", k=3)
    assert found[0].title == "Volcanoes" and found[0].anchor == "in-europe" and found[0].coverage == 1.0
    partly = passages.find(book, "Do volcanoes in Iceland make honey?", k=3)
    assert partly and max(p.coverage for p in partly) < 0.8  # "iceland" is in no passage
