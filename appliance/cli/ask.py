"""`almanac ask "question" [--book NAME] [--json]`: the assistant in a terminal, the same answer as the page."""

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
@pass_state
def ask(state: CliState, question: str, books: tuple[str, ...], as_json: bool):
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
            if event.answered:
                result.update(answer="".join(text), finish_reason=event.finish_reason, usage=event.usage)
    library.close()
    if as_json:
        click.echo(json.dumps(result, ensure_ascii=False, indent=2))
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
