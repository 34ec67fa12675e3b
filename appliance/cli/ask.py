"""`almanac ask "question" [--book NAME] [--json] [--later]`: the assistant in a terminal, the same answer as
the page; --later queues the question for the deep model instead (see `almanac answers`)."""

from __future__ import annotations

import json

import click

from .state import CliState, pass_state


@click.command()
@click.argument("question")
@click.option(
    "--book", "books", multiple=True, metavar="NAME", help="Search only this book (repeatable; default: every book)."
)
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="Print one JSON object: question, passages, answer, finish_reason, usage, message.",
)
@click.option("--later", is_flag=True, help="Ask the deep model: queue a waiting answer and return at once.")
@pass_state
def ask(state: CliState, question: str, books: tuple[str, ...], as_json: bool, later: bool):
    """Answer QUESTION from the library with the configured model, citing its passages; with no model, the
    passages are the answer."""
    from ..assistant import Done, Failed, PassagesFound, Settings, TextDelta, answer

    library = state.library()
    library.scan()
    chosen = library.select(list(books))
    if chosen.unknown:
        raise click.ClickException(
            f"none of the books {', '.join(books)} is in this library (`almanac content list` names them)"
        )
    if later:
        _ask_later(state, question, chosen.archives, list(books), as_json)
        library.close()
        return
    result: dict = {
        "question": question,
        "passages": [],
        "answer": None,
        "finish_reason": None,
        "usage": None,
        "message": None,
    }
    text: list[str] = []
    for event in answer(question, chosen.archives, Settings.from_config(state.config.get("assistant"))):
        if isinstance(event, PassagesFound):
            result["passages"] = event.passages
        elif isinstance(event, TextDelta):
            text.append(event.text)
            if not as_json:
                click.echo(event.text, nl=False)
        elif isinstance(event, Failed):
            if text and not as_json:
                click.echo()
            raise click.ClickException(
                event.reason if event.stage == "search" else f"the answer broke off: {event.reason}"
            )
        elif isinstance(event, Done):
            result["message"] = event.message
            if event.nearest is not None:
                result["nearest"] = event.nearest
            if event.answered:
                result.update(answer="".join(text), finish_reason=event.finish_reason, usage=event.usage)
    library.close()
    if as_json:
        click.echo(json.dumps(result, ensure_ascii=False, indent=2))
        return
    if "nearest" in result:
        click.echo(result["message"])
        click.echo(
            "The nearest titles:" + "".join(f"\n  {t['title']} ({t['book']}: {t['url']})" for t in result["nearest"])
        )
        return
    if not result["passages"]:
        click.echo("Nothing in the library matches this question.")
        return
    if result["answer"] is None:
        click.echo(result["message"] or "No answer from a model; the sources below are what the library has.", err=True)
        for p in result["passages"]:
            click.echo(f"[{p['n']}] {p['title']} ({p['book']}: {p['url']})\n    {p['text']}")
        return
    click.echo("\n\nSources:")
    for p in result["passages"]:
        click.echo(f"[{p['n']}] {p['title']} ({p['book']}: {p['url']})")


def _ask_later(state: CliState, question: str, archives, names: list[str], as_json: bool) -> None:
    from content.search import QueryError

    from ..assistant import Settings
    from ..assistant.jobs import JobStore
    from ..assistant.later import NothingToAsk, ask_later
    from .answers import TERMINAL_DEVICE

    jobs = JobStore(state.data().db)
    deep = Settings.deep_from_config(state.config.get("assistant"))
    try:
        job = ask_later(jobs, TERMINAL_DEVICE, question, archives, names, deep)
    except NothingToAsk as e:
        nearest = "".join(f"\n  {t['title']} ({t['book']}: {t['url']})" for t in e.nearest)
        raise click.ClickException(str(e) + (f" The nearest titles:{nearest}" if nearest else "")) from None
    except QueryError as e:
        raise click.ClickException(str(e)) from None
    except ValueError as e:
        raise click.ClickException(f"{e}; set it with `almanac config set assistant.deep.url URL`") from None
    finally:
        jobs.close()
    if as_json:
        click.echo(json.dumps(job.to_json(), ensure_ascii=False, indent=2))
    else:
        click.echo(f"queued as waiting answer {job.id}; `almanac answers show {job.id}` shows it")
