#!/usr/bin/env python3
"""Prefix reuse for follow-ups (issue 13): a follow-up question should pay only for its new tokens. Target:
follow-up time to first token <= 0.25x the first turn's, on the assistant's real prompts.

A real `almanac model serve` (its default prompt cache of 4 entries) answers conversations of three turns over
the Handbook (built from docs/ with the project's ZIM builder) and the shared ZIMs, each turn's passages found by
the assistant's own find_sources (with the conversation as context) and its prompt built two ways, each against
its own server in the same run (both up at once, taking turns conversation by conversation):

- append-only: appliance.assistant.prompt.build_messages, where each earlier turn keeps its passages, so a
  follow-up's prompt begins with the whole of the last one and its answer;
- the previous layout (the named peer): earlier turns without their passages, only this turn's passages (all
  `--passages` of them, as before: no follow_up_passages), so a follow-up shares little more than the system
  text with the turn before.

Append-only alone makes a follow-up pay only for its new tokens, but a follow-up that brings as many passages
as the first question still has as many new tokens; `assistant.follow_up_passages` bounds the new ones (the
passages the conversation holds are named, not repeated).

A follow-up is counted grounded when a passage it cites holds the words that answer it (ANSWERED_BY), so
that fewer new passages cannot buy a sooner first word silently.

The time to first token is measured by the client (model_client.chat_stream: from the request to the first
piece of text), over each conversation's first turn and its follow-ups. Beside it, per turn, the prompt tokens
the server computed (its usage: prompt_tokens less prompt_tokens_details.cached_tokens, the engine's
prompt_tokens_reused) and, for a follow-up, the tokens it genuinely adds (its prompt less the last prompt and the
last answer's tokens): the difference is the part of the earlier answer computed again because its text did not
give back the tokens the model generated (the tiny model's random bytes never do; a real model's text mostly
does).

    PYTHONPATH=. python bench/followup_ttft.py [--model-dir DIR] [--passages 8] [--rounds 2] [--json OUT]

Without --model-dir the tests' tiny Qwen3-MoE (tests/tinymoe.py) is built in a temp dir.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
for p in (ROOT, ROOT / "bench", ROOT / "tests"):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))

from almanac_testing import start_model_server  # noqa: E402
from answers_load import tiny_model  # noqa: E402
from grounding import DEFAULT_ZIM_DIR, open_library  # noqa: E402

from appliance.assistant import model_client  # noqa: E402
from appliance.assistant.answer import Settings, find_sources  # noqa: E402
from appliance.assistant.prompt import SYSTEM_PROMPT, build_messages, user_message  # noqa: E402

CONVERSATIONS = (
    (
        "How do I add a ZIM file to the library?",
        "Can I remove it again later?",
        "Where does the box keep those files?",
    ),
    (
        "How does the assistant answer questions from the library?",
        "What happens to a waiting answer when the box restarts?",
        "How do I make its answers less random?",
    ),
    (
        "How do I get a street-level map of a country?",
        "Does the place search work without the accents?",
        "Under which licence is that map data?",
    ),
)
# What answers each follow-up, written by hand from the Handbook: a follow-up is grounded when one of the passages
# it cites (held or new) holds one of these words. Fewer new passages must not lose these.
ANSWERED_BY = {
    "Can I remove it again later?": ("content remove",),
    "Where does the box keep those files?": ("archives/",),
    "What happens to a waiting answer when the box restarts?": ("started again from the beginning",),
    "How do I make its answers less random?": ("temperature", "--temp"),
    "Does the place search work without the accents?": ("Accents do not matter",),
    "Under which licence is that map data?": ("ODbL",),
}
WARM_UP = [{"role": "user", "content": "Say hello."}]


def previous_layout(question: str, cited: list[dict], history: list[dict]) -> list[dict]:
    """The assistant's prompt before issue 13: the last six turns without their passages (answers cut to 1,500
    characters), then this turn's passages and question."""
    messages = [{"role": "system", "content": SYSTEM_PROMPT}]
    for turn in history[-6:]:
        messages += [{"role": "user", "content": turn["q"]}, {"role": "assistant", "content": turn["a"][:1500]}]
    return messages + [{"role": "user", "content": user_message(question, cited)}]


LAYOUTS = {"append-only (build_messages)": build_messages, "previous layout (peer)": previous_layout}


def ask(url: str, model: str, messages: list[dict], max_tokens: int) -> tuple[float, str, dict]:
    """(seconds to the first piece of text, the answer, usage) of one streamed chat request."""
    t0 = time.perf_counter()
    first, text, usage = None, [], {}
    for event in model_client.chat_stream(url, model, messages, max_tokens, 0.0, timeout=600):
        if isinstance(event, model_client.Delta):
            if first is None:
                first = time.perf_counter() - t0
            text.append(event.text)
        else:
            usage = event.usage or {}
    return (first if first is not None else time.perf_counter() - t0), "".join(text), usage


def run(model_dir: Path, books, settings: Settings, args, log: Path) -> list[dict]:
    """Both layouts, each on its own server, both up at once and taking turns conversation by conversation, so
    the load of a shared machine falls on both alike."""
    servers = {name: start_model_server(model_dir, 0, log) for name in LAYOUTS}
    try:
        models = {name: model_client.list_models(url)[0] for name, (_, url) in servers.items()}
        for name, (_, url) in servers.items():
            for _ in range(2):  # compile and warm up, on a prompt that shares nothing but the template
                ask(url, models[name], WARM_UP, 8)
        rows = []
        for _ in range(args.rounds):
            for turns in CONVERSATIONS:
                for name, layout in LAYOUTS.items():
                    url = servers[name][1]
                    chosen = (
                        settings if layout is build_messages else dataclasses.replace(settings, follow_up_passages=20)
                    )
                    history: list[dict] = []
                    last = None
                    for i, question in enumerate(turns):
                        sources, _ = find_sources(question, books, chosen, history)
                        messages = layout(question, sources, history)
                        ttft, answer, usage = ask(url, models[name], messages, args.max_tokens)
                        prompt = usage["prompt_tokens"]
                        cached = (usage.get("prompt_tokens_details") or {}).get("cached_tokens", 0)
                        rows.append(
                            {
                                "layout": name,
                                "turn": i + 1,
                                "ttft_s": ttft,
                                "prompt_tokens": prompt,
                                "cached_tokens": cached,
                                "computed_tokens": prompt - cached,
                                "new_tokens": prompt - (last["prompt_tokens"] + last["completion_tokens"])
                                if last
                                else prompt,
                                "chars": sum(len(m["content"]) for m in messages),
                                "new_chars": len(messages[-1]["content"]),
                                "grounded": any(w in c["text"] for c in sources for w in ANSWERED_BY.get(question, ()))
                                if i
                                else None,
                            }
                        )
                        last = usage
                        history.append({"q": question, "a": answer, "passages": sources})
        return rows
    finally:
        for proc, _ in servers.values():
            proc.terminate()
            proc.wait(30)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model-dir", type=Path)
    ap.add_argument("--passages", type=int, default=8, help="passages per turn (assistant.deep.passages: 8)")
    ap.add_argument("--follow-up-passages", type=int, default=2, help="assistant.follow_up_passages")
    ap.add_argument("--max-tokens", type=int, default=48, help="answer length of each turn")
    ap.add_argument("--rounds", type=int, default=2, help="times each conversation is asked, per layout")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="almanac-followup-"))
    model_dir = args.model_dir or tiny_model(work)
    books = open_library(DEFAULT_ZIM_DIR, work)
    settings = dataclasses.replace(
        Settings(url=""), passages=args.passages, min_coverage=0.0, follow_up_passages=args.follow_up_passages
    )
    rows = run(model_dir, books, settings, args, work / "model.log")

    print(f"\nfollow-up time to first token: {model_dir.name}, {len(CONVERSATIONS)} conversations of 3 turns x")
    print(
        f"{args.rounds} rounds per layout, {args.passages} passages on a first question, at most"
        f" {args.follow_up_passages} new on a follow-up, one server per layout, taking turns\n"
    )
    print(
        "| prompt layout | first turn TTFT p50 | follow-up TTFT p50 | follow-up / first | prompt tokens first → 3rd"
        " | computed tokens first / follow-up p50 (share) | follow-up's new tokens p50 | follow-ups grounded |"
    )
    print("|---|---|---|---|---|---|---|---|")
    summary = {}
    for name in LAYOUTS:
        mine = [r for r in rows if r["layout"] == name]
        firsts, follows = [r for r in mine if r["turn"] == 1], [r for r in mine if r["turn"] > 1]
        first = statistics.median(r["ttft_s"] for r in firsts)
        follow = statistics.median(r["ttft_s"] for r in follows)
        tok1 = statistics.median(r["prompt_tokens"] for r in firsts)
        tok3 = statistics.median(r["prompt_tokens"] for r in mine if r["turn"] == 3)
        comp1 = statistics.median(r["computed_tokens"] for r in firsts)
        comp = statistics.median(r["computed_tokens"] for r in follows)
        new = statistics.median(r["new_tokens"] for r in follows)
        summary[name] = {
            "first_s": first,
            "follow_up_s": follow,
            "ratio": follow / first,
            "tokens": [tok1, tok3],
            "computed_first": comp1,
            "computed_follow_up": comp,
            "computed_share": comp / comp1,
            "new_follow_up": new,
            "grounded_follow_ups": [sum(bool(r["grounded"]) for r in follows), len(follows)],
        }
        print(
            f"| {name} | {first:.3f} s | {follow:.3f} s | {follow / first:.2f}x | {tok1:.0f} → {tok3:.0f}"
            f" | {comp1:.0f} / {comp:.0f} ({comp / comp1:.2f}) | {f'{new:.0f}' if name == list(LAYOUTS)[0] else '—'}"
            f" | {summary[name]['grounded_follow_ups'][0]}/{len(follows)} |"
        )
    ours, peer = summary[list(LAYOUTS)[0]], summary[list(LAYOUTS)[1]]
    print(
        f"\nappend-only vs the previous layout, follow-up TTFT: {ours['follow_up_s'] / peer['follow_up_s']:.2f}x;"
        f" target follow-up / first <= 0.25: {'met' if ours['ratio'] <= 0.25 else 'not met'}"
    )
    load = Path("/proc/loadavg").read_text().split()[:3] if Path("/proc/loadavg").exists() else []
    print(f"load average at the end: {' '.join(load)}")
    if args.json:
        run_args = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
        args.json.write_text(
            json.dumps({"args": run_args, "loadavg": load, "summary": summary, "rows": rows}, indent=2)
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
