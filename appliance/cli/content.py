"""`almanac content ...`: build ZIM archives and manage the library's books."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from .state import CliState, pass_state


@click.group()
def content():
    """The library of ZIM archives."""


@content.command("build-zim")
@click.argument("src", type=click.Path(file_okay=False, path_type=Path))
@click.argument("out", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--title", help="Title (default: the main page's heading).")
@click.option("--name", help="Book name in catalogs (default: the output file name).")
@click.option("--description", help="One-line description.")
@click.option("--language", default="eng", show_default=True, help="ISO 639-3 language code.")
def build_zim_cmd(src: Path, out: Path, title, name, description, language):
    """Build a ZIM (full-text and title index, metadata, illustration) from a folder of Markdown/HTML."""
    from content.zim_builder import ZimBuildError, build_zim

    try:
        report = build_zim(src, out, name=name, title=title, description=description, language=language)
    except ZimBuildError as e:
        raise click.ClickException(str(e)) from None
    click.echo(
        f"{report.out_path}: {report.article_count} pages, {report.resource_count} files, "
        f"{report.size_bytes / 1e3:.0f} kB, main page {report.main_path!r}"
    )


def _library_call(fn, *args):
    from content.library import LibraryError

    try:
        return fn(*args)
    except LibraryError as e:
        raise click.ClickException(str(e)) from None


@content.command("add")
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path))
@pass_state
def content_add(state: CliState, path: Path):
    """Register a ZIM file (checked in a separate process first)."""
    book = _library_call(state.library().add, path)
    click.echo(f"added {book.name}: {book.title} ({book.article_count} articles, {book.size / 1e6:.1f} MB)")


@content.command("list")
@click.option("--json", "as_json", is_flag=True)
@pass_state
def content_list(state: CliState, as_json: bool):
    """List the books in the library."""
    library = state.library()
    library.scan()
    books = library.list()
    if as_json:
        click.echo(json.dumps([b.to_json() for b in books], indent=2))
        return
    for b in books:
        click.echo(f"{b.name}\t{b.title}\t{b.language}\t{b.article_count} articles\t{b.size / 1e6:.1f} MB")
    for rejected in library.rejected():
        click.echo(f"refused: {rejected['reason']}", err=True)


@content.command("info")
@click.argument("name")
@pass_state
def content_info(state: CliState, name: str):
    """Show a book's metadata."""
    book = state.library().get(name)
    if book is None:
        raise click.ClickException(f"no book named {name!r}")
    for key, value in book.to_json().items():
        click.echo(f"{key}: {value}")


@content.command("remove")
@click.argument("name")
@pass_state
def content_remove(state: CliState, name: str):
    """Remove a book; its file is deleted only if it lives in the data dir's archives folder."""
    library = state.library()
    book = _library_call(library.remove, name)
    path = Path(book.path)
    if path.parent.resolve() == library.archives_dir.resolve():
        path.unlink(missing_ok=True)  # else the next scan would register it again
        click.echo(f"removed {name} and deleted {path}")
    else:
        click.echo(f"removed {name} (file kept at {path})")


@content.command("check")
@click.argument("name")
@pass_state
def content_check(state: CliState, name: str):
    """Run libzim's full integrity check on a book."""
    from content.zim_probe import deep_check

    book = state.library().get(name)
    if book is None:
        raise click.ClickException(f"no book named {name!r}")
    ok, message = deep_check(book.path)
    click.echo(f"{'OK' if ok else 'FAIL'} {name}: {message}")
    sys.exit(0 if ok else 1)
