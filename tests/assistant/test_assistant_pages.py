"""The assistant's pages without a model: cited passages from the library, clear notes, no 500s.

The answers written by a real model server are tested beside this file, in test_assistant_answers.py.
"""

from __future__ import annotations

import json

import pytest

from almanac_testing import csrf_headers, free_port, sse_events
from appliance import assistant
from appliance.web.assistant import cite
from content.search import plain_text

QUESTION = "How do I add zim files to the library?"


@pytest.fixture
def config(data_dir):
    from appliance.config import load_config

    # A port nothing listens on: the state of a fresh install with no model.
    (data_dir.parent / "config.yaml").write_text(
        f"server:\n  host: 127.0.0.1\nassistant:\n  url: http://127.0.0.1:{free_port()}\n  passages: 3\n"
    )
    return load_config()


def test_page_and_its_json_twin_say_no_model_is_running(client):
    html = client.get("/assistant")
    assert html.status_code == 200 and b'<form class="search ask"' in html.data
    assert b"No model is running" in html.data
    data = client.get("/assistant?format=json").get_json()
    assert data["question"] == "" and data["passages"] == [] and data["answer"] is None
    assert (
        data["model"]["available"] is False
        and "no model server answers at http://127.0.0.1:" in data["model"]["message"]
    )


def test_a_question_gets_numbered_passages_that_link_to_their_articles(client):
    data = client.get("/assistant", query_string={"q": QUESTION, "format": "json"}).get_json()
    assert data["error"] is None and data["answer"] is None
    cited = data["passages"]
    assert 1 <= len(cited) <= 3 and [c["n"] for c in cited] == list(range(1, len(cited) + 1))
    assert "zim" in cited[0]["text"].lower()
    for c in cited:
        article = client.get(c["url"])
        assert article.status_code == 200, c["url"]
        assert c["text"][-40:] in plain_text(article.data)  # the passage is that article's own text
    html = client.get("/assistant", query_string={"q": QUESTION}).data.decode()
    assert 'id="source-1"' in html and cited[0]["title"] in html


def test_the_books_asked_for_are_the_only_ones_searched(client):
    data = client.get(
        "/assistant", query_string={"q": "Італьянская мова", "books.name": "example", "format": "json"}
    ).get_json()
    assert data["passages"] == []
    data = client.get(
        "/assistant",
        query_string={"q": "Італьянская мова", "books.name": "wikibooks_be_all_nopic_2017-02", "format": "json"},
    ).get_json()
    assert data["passages"] and {c["book"] for c in data["passages"]} == {"wikibooks_be_all_nopic_2017-02"}


def test_stream_sends_the_passages_then_says_there_is_no_answer(client):
    r = client.get("/assistant/stream", query_string={"q": QUESTION}, headers={"Accept": "text/event-stream"})
    assert r.status_code == 200 and r.mimetype == "text/event-stream"
    got = sse_events(r.get_data(as_text=True))
    assert [name for name, _ in got] == ["passages", "done"]
    assert got[0][1] == client.get("/assistant", query_string={"q": QUESTION, "format": "json"}).get_json()["passages"]
    assert got[1][1]["answered"] is False and "No answer from a model" in got[1][1]["message"]


def test_a_question_nothing_matches(client):
    r = client.get("/assistant/stream", query_string={"q": "quantum chromodynamics"})
    assert sse_events(r.get_data(as_text=True)) == [
        ("passages", []),
        ("done", {"finish_reason": None, "answered": False, "message": None}),
    ]
    html = client.get("/assistant", query_string={"q": "quantum chromodynamics"}).data
    assert b"Nothing in the library matches this question." in html


@pytest.mark.parametrize("q, message", [("the of", "no words"), ("x" * 2001, "longer than 2000")])
def test_bad_questions_are_a_clear_400_and_a_stream_error(client, q, message):
    r = client.get("/assistant", query_string={"q": q, "format": "json"})
    assert r.status_code == 400 and message in r.get_json()["error"]
    got = sse_events(client.get("/assistant/stream", query_string={"q": q}).get_data(as_text=True))
    assert got == [("error", {"message": got[0][1]["message"], "stage": "search"})]
    assert message in got[0][1]["message"]
    assert client.get("/healthz").status_code == 200


def test_citations_become_links_invalid_ones_go_and_the_answer_is_escaped():
    cited = [{"n": 1}, {"n": 2}]
    html = str(cite("Etna <b>erupts</b> [1][2], see [3] & [0].", cited))
    assert html == (
        'Etna &lt;b&gt;erupts&lt;/b&gt; <a class="cite" href="#source-1">[1]</a>'
        '<a class="cite" href="#source-2">[2]</a>, see  &amp; .'
    )
    # With its passage known, a citation leads to the article's section and shows the passage on hover.
    cited = [{"n": 1, "url": "/content/b/Etna#Eruptions", "text": 'It erupts "often" & loudly.'}]
    assert str(cite("Yes [1].", cited)) == (
        'Yes <a class="cite" href="/content/b/Etna#Eruptions" data-source="source-1"'
        ' title="It erupts &#34;often&#34; &amp; loudly.">[1]</a>.'
    )


def test_the_prompt_holds_every_passage_numbered_and_the_question():
    cited = [
        {"n": 1, "title": "Volcanoes", "book": "facts", "text": "Etna is active."},
        {"n": 2, "title": "Bread", "book": "facts", "text": "Bread rises."},
    ]
    system, user = assistant.build_messages("Is Etna active?", cited)
    assert system["role"] == "system" and "[1]" in system["content"]
    assert user["role"] == "user"
    assert (
        user["content"].index("[1] Volcanoes (facts)\nEtna is active.")
        < user["content"].index("[2] Bread (facts)\nBread rises.")
        < user["content"].index("Question: Is Etna active?")
    )


def test_home_card_leads_to_the_assistant(client):
    cards = client.get("/?format=json").get_json()["cards"]
    card = next(c for c in cards if c["id"] == "assistant")
    assert card["url"] == "/assistant"
    assert client.get(card["url"]).status_code == 200


@pytest.mark.parametrize(
    "text, key",
    [
        ("assistant:\n  passages: 0\n", "assistant.passages"),
        ("assistant:\n  temperature: 3\n", "assistant.temperature"),
        ("assistant:\n  temperature: warm\n", "assistant.temperature"),
        ("assistant:\n  url: ftp://box\n", "assistant.url"),
    ],
)
def test_bad_assistant_settings_name_the_key(tmp_path, text, key):
    from appliance.config import ConfigError, load_config

    path = tmp_path / "config.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as e:
        load_config(path, env={})
    assert e.value.key == key


def test_status_and_doctor_without_a_model(data_dir, tmp_path):
    from almanac_testing import almanac

    port = free_port()
    cfg = tmp_path / "assistant.yaml"
    cfg.write_text(f"server:\n  host: 127.0.0.1\n  port: {free_port()}\nassistant:\n  url: http://127.0.0.1:{port}\n")
    status = json.loads(almanac("status", "--json", env={"ALMANAC_CONFIG": str(cfg)}).stdout)
    assert status["assistant"]["url"] == f"http://127.0.0.1:{port}" and status["assistant"]["models"] == []
    assert "no model server answers" in status["assistant"]["message"]
    doctor = almanac("doctor", env={"ALMANAC_CONFIG": str(cfg)}).stdout
    assert (
        f"OK   assistant: no model running (passages only): no model server answers at http://127.0.0.1:{port}"
        in doctor
    )
    # A model the portal should be running, but nothing answers: that is a failure, with the fix.
    cfg.write_text(cfg.read_text() + f"  model_dir: {tmp_path}\n")
    doctor = almanac("doctor", env={"ALMANAC_CONFIG": str(cfg)}).stdout
    assert "FAIL assistant: no model server answers" in doctor and "fix: start the portal" in doctor


def test_search_results_offer_the_question_to_the_assistant(client):
    html = client.get("/search", query_string={"pattern": "offline wikipedia", "books.name": "example"}).data.decode()
    assert '<a href="/assistant?q=offline%20wikipedia&books.name=example">Ask the assistant</a>' in html
    everywhere = client.get("/search", query_string={"pattern": "offline wikipedia"}).data.decode()
    assert '<a href="/assistant?q=offline%20wikipedia">Ask the assistant</a>' in everywhere
    data = client.get("/assistant?q=offline%20wikipedia&books.name=example&format=json").get_json()
    assert data["passages"] and {p["book"] for p in data["passages"]} == {"example"}


def test_unknown_books_are_a_404(client):
    assert client.get("/assistant?q=wikipedia&books.name=nosuchbook&format=json").status_code == 404
    assert client.get("/assistant/stream?q=wikipedia&books.name=nosuchbook").status_code == 404
    assert client.get("/assistant?q=wikipedia&books.name=nosuchbook&books.name=example&format=json").get_json()[
        "passages"
    ]


def test_a_follow_up_is_posted_with_the_conversation(client):
    history = [{"q": "What is Kiwix?", "a": "An offline reader [1]."}]
    r = client.post(
        "/assistant/stream", json={"q": "How do I install it?", "history": history}, headers=csrf_headers(client)
    )
    assert r.status_code == 200 and r.mimetype == "text/event-stream"
    got = sse_events(r.get_data(as_text=True))
    assert [name for name, _ in got] == ["passages", "done"]
    assert got[0][1] and any("kiwix" in p["text"].lower() for p in got[0][1])
    scoped = client.post(
        "/assistant/stream", json={"q": "wikipedia", "books": ["example"]}, headers=csrf_headers(client)
    )
    assert {p["book"] for p in sse_events(scoped.get_data(as_text=True))[0][1]} == {"example"}


@pytest.mark.parametrize(
    "body, message",
    [
        ("not json", "send a JSON object"),
        ([1, 2], "send a JSON object"),
        ({"q": "wikipedia", "history": "earlier"}, "history must be a list"),
        ({"q": "wikipedia", "history": [{"q": "x"}]}, "each history turn"),
        ({"q": "wikipedia", "books": ["nosuchbook"]}, "None of the requested books"),
    ],
)
def test_bad_follow_ups_are_a_json_400_or_404(client, body, message):
    r = (
        client.post("/assistant/stream", data=body, content_type="application/json", headers=csrf_headers(client))
        if isinstance(body, str)
        else client.post("/assistant/stream", json=body, headers=csrf_headers(client))
    )
    assert r.status_code in (400, 404) and message in r.get_json()["message"]
    assert client.get("/healthz").status_code == 200


def test_the_prompt_carries_the_conversation_before_the_passages():
    cited = [{"n": 1, "title": "Volcanoes", "book": "facts", "text": "Etna is 3,357 m tall."}]
    history = [{"q": "What is Etna?", "a": "A volcano [1].", "passages": cited}, {"q": "Is it active?", "a": "Yes."}]
    messages = assistant.build_messages("How tall is it?", cited, history)
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "user", "assistant", "user"]
    # Each earlier turn as it was asked: with its own passages when the history has them.
    assert messages[1]["content"].startswith("Passages from the library:\n\n[1] Volcanoes (facts)")
    assert messages[1]["content"].endswith("Question: What is Etna?") and messages[2]["content"] == "A volcano [1]."
    assert messages[3]["content"] == "Is it active?"
    assert messages[-1]["content"].endswith("Question: How tall is it?")
    assert "[1]: passage [1] of question 1" in messages[-1]["content"]  # held since question 1: named


def test_a_passage_the_conversation_holds_is_named_not_written_again():
    etna = {"n": 2, "title": "Volcanoes", "book": "facts", "text": "Etna erupts every few years."}
    first = [{"n": 1, "title": "Volcanoes", "book": "facts", "text": "Etna is 3,357 m tall."}, etna]
    history = [{"q": "What is Etna?", "a": "A tall volcano [1].", "passages": first}]
    follow_up = [{**etna, "n": 1}, {"n": 2, "title": "Sicily", "book": "facts", "text": "Sicily is an island."}]
    last = assistant.build_messages("Does it erupt?", follow_up, history)[-1]["content"]
    assert "[1]: passage [2] of question 1\n" in last and "Volcanoes" not in last  # its title is up there
    assert "Etna erupts every few years." not in last and "[2] Sicily (facts)\nSicily is an island." in last


def test_a_follow_ups_prompt_is_the_last_prompt_and_its_answer_plus_the_new_turn():
    """Append-only (issue 13): the model server's prompt cache then pays only for the new turn. Past the
    budget the oldest turns go in one jump, and from there the prompts append again."""
    history, prompts = [], []
    for i in range(40):
        cited = [{"n": 1, "title": f"Article {i}", "book": "facts", "text": f"passage {i} " + "w" * 700}]
        prompts.append(assistant.build_messages(f"question {i}", cited, history))
        history.append({"q": f"question {i}", "a": f"answer {i} " + "x" * 400, "passages": cited})
    drops = 0
    for before, after, turn in zip(prompts, prompts[1:], history):
        answer = {"role": "assistant", "content": turn["a"]}
        if after[:-1] == before + [answer]:
            continue
        drops += 1  # a drop: the prompt starts again from an older turn, kept whole, never cut mid-turn
        assert after[0] == before[0] and after[1]["content"].startswith("Passages from the library:")
        assert sum(len(m["content"]) for m in after[1:-1]) <= assistant.HISTORY_CHARS * 0.5
    assert 1 <= drops <= 40 // 4  # a drop now and then, not at every turn
    assert all(sum(len(m["content"]) for m in p[1:-1]) <= assistant.HISTORY_CHARS for p in prompts)


UNCOVERED = "Who won the football world cup in 1998?"  # the shared archives hold words of it, not its answer


def test_a_question_the_library_does_not_cover_is_declined_with_the_nearest_titles(client):
    data = client.get("/assistant", query_string={"q": UNCOVERED, "format": "json"}).get_json()
    assert data["declined"] is True and data["passages"] == [] and data["answer"] is None
    assert data["error"] == "The library does not cover this question."
    assert data["nearest"] and all(t["url"].startswith("/content/") and t["title"] for t in data["nearest"])
    assert client.get(data["nearest"][0]["url"]).status_code == 200
    html = client.get("/assistant", query_string={"q": UNCOVERED}).data.decode()
    assert "The library does not cover this question." in html and data["nearest"][0]["title"] in html
    got = sse_events(client.get("/assistant/stream", query_string={"q": UNCOVERED}).get_data(as_text=True))
    assert got[0] == ("passages", []) and got[1][1]["declined"] is True and got[1][1]["nearest"] == data["nearest"]
    # A question the library does answer is not declined, and its passages cover it.
    covered = client.get("/assistant", query_string={"q": QUESTION, "format": "json"}).get_json()
    assert covered["declined"] is False and covered["passages"][0]["coverage"] >= 0.5


def test_citations_lead_to_the_section_the_passage_came_from(client):
    data = client.get("/assistant", query_string={"q": QUESTION, "format": "json"}).get_json()
    with_anchor = [p for p in data["passages"] if "#" in p["url"]]
    assert with_anchor, data["passages"]
    for p in with_anchor:
        anchor = p["url"].split("#", 1)[1]
        page = client.get(p["url"].split("#", 1)[0]).data.decode()
        assert f'id="{anchor}"' in page  # the section exists in the article
        section = page[page.index(f'id="{anchor}"') :]
        assert p["text"][-30:] in plain_text(section.encode())  # ... and the passage is in it


def test_min_coverage_zero_answers_from_whatever_was_found(tmp_path, data_dir, shared_library_db):
    import shutil

    from appliance.config import load_config
    from appliance.web import create_app

    (data_dir.parent / "config.yaml").write_text(
        f"server:\n  host: 127.0.0.1\nassistant:\n  url: http://127.0.0.1:{free_port()}\n  min_coverage: 0\n"
    )
    data_dir.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(shared_library_db, data_dir / "almanac.db")
    app = create_app(load_config())
    try:
        data = app.test_client().get("/assistant", query_string={"q": UNCOVERED, "format": "json"}).get_json()
        assert data["declined"] is False and data["passages"]
    finally:
        app.extensions["almanac"].close()
