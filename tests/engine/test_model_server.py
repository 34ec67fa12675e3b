"""`almanac model serve`: a real server process on 127.0.0.1 against the engine in-process.

Greedy answers must be exactly llm_engine.generate's on the same prompt tokens; streams must
add up to the whole answer; bad requests get JSON errors and the server keeps serving.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import shutil
import socket
import threading
import time
from pathlib import Path

import pytest
from mlx_lm.utils import load_tokenizer

import llm_engine
from llm_engine import cpu_blas, cpu_quantized
from llm_engine.device import compiled_kernels, on_cpu
from llm_engine.serve.prompts import chat_tokens, fallback_prompt
from llm_engine.serve.stops import StopFilter

from engine_testing import model_serve

ROOT = Path(__file__).resolve().parents[2]
PROMPT_LIMIT = 200
TOKENS_LIMIT = 2000
# A ChatML-like template, as real checkpoints ship in chat_template.jinja.
TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
MESSAGES = [{"role": "system", "content": "Answer briefly."}, {"role": "user", "content": "Why does water boil?"}]
LONG = "Water boils"  # greedy, this tiny model writes 1500+ tokens without an EOS
SHORT_EOS = "Tell me a long story"  # ... and this one stops with an EOS after ~30 tokens


@pytest.fixture(scope="module")
def model_dir(checkpoints, tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("serve") / "tiny-qwen3"
    shutil.copytree(checkpoints.streamed("qwen3_moe"), d)
    (d / "chat_template.jinja").write_text(TEMPLATE)
    return d


@pytest.fixture(scope="module")
def engine(model_dir):
    with llm_engine.load(model_dir) as e:
        yield e


@contextlib.contextmanager
def running(model_dir: Path, *args: str):
    """`almanac model serve DIR --port 0 ARGS` as a process; yields (process, Server)."""
    with model_serve(model_dir, *args) as (p, url):
        assert url.startswith("http://127.0.0.1:"), url
        yield p, Server(url, int(url.rsplit(":", 1)[1]))


@pytest.fixture(scope="module")
def server(model_dir):
    with running(model_dir, "--max-prompt-tokens", str(PROMPT_LIMIT), "--max-tokens-limit", str(TOKENS_LIMIT)) as (
        p,
        server,
    ):
        yield server
        # SIGTERM in the middle of a generation is a clean shutdown.
        with server.raw_stream(
            "/v1/completions", {"model": model_dir.name, "prompt": LONG, "max_tokens": 1500, "stream": True}
        ):
            p.terminate()
            assert p.wait(30) == 0


class Server:
    def __init__(self, url: str, port: int):
        self.url, self.port = url, port

    def request(self, method: str, path: str, body=None, raw: bytes | None = None):
        """(status, parsed JSON body)."""
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=120)
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        c.request(method, path, body=data, headers={"Content-Type": "application/json"})
        r = c.getresponse()
        out = r.status, json.loads(r.read())
        c.close()
        return out

    def post(self, path: str, body: dict) -> dict:
        status, out = self.request("POST", path, body)
        assert status == 200, out
        return out

    def lines(self, path: str, body: dict) -> list[str]:
        """The non-empty lines of a streamed reply."""
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=120)
        c.request("POST", path, body=json.dumps(body).encode())
        r = c.getresponse()
        assert r.status == 200, r.read()
        out = [line.decode().rstrip("\n") for line in r]
        c.close()
        return [line for line in out if line]

    def sse(self, path: str, body: dict) -> list[dict]:
        lines = self.lines(path, {**body, "stream": True})
        assert all(line.startswith("data: ") for line in lines)
        assert lines[-1] == "data: [DONE]"
        return [json.loads(line[6:]) for line in lines[:-1]]

    def ndjson(self, path: str, body: dict) -> list[dict]:
        return [json.loads(line) for line in self.lines(path, body)]

    @contextlib.contextmanager
    def raw_stream(self, path: str, body: dict):
        """A socket on which a streamed reply has begun; closing it is a disconnect."""
        data = json.dumps(body).encode()
        sock = socket.create_connection(("127.0.0.1", self.port))
        with sock:
            sock.sendall(
                b"POST %s HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s" % (path.encode(), len(data), data)
            )
            got = b""
            while b"\r\n\r\n" not in got or not got.split(b"\r\n\r\n", 1)[1]:
                chunk = sock.recv(4096)
                assert chunk, got
                got += chunk
            assert got.startswith(b"HTTP/1.1 200"), got
            yield sock

    def health(self) -> dict:
        status, out = self.request("GET", "/health")
        assert status == 200
        return out


def reference(engine, prompt, max_tokens: int) -> llm_engine.Result:
    return llm_engine.generate(engine, prompt, max_tokens=max_tokens, temp=0.0)


def finish(result: llm_engine.Result, max_tokens: int) -> str:
    return "length" if len(result.tokens) == max_tokens else "stop"


def chat_prompt(engine, messages) -> list[int]:
    return list(engine.tokenizer.apply_chat_template(messages, add_generation_prompt=True))


# --- without a server --------------------------------------------------------------------


def test_stop_filter_holds_back_a_stop_string_across_deltas():
    f = StopFilter(["END", "\n\n"])
    assert f.feed("abc E") == ("abc ", False)  # "E" may start "END"
    assert f.feed("N") == ("", False)
    assert f.feed("Dxyz") == ("", True)
    f = StopFilter(["END"])
    assert f.feed("xE") == ("x", False)
    assert f.feed("Nd") == ("ENd", False)  # not a stop string after all: released
    assert f.feed("E") == ("", False) and f.flush() == "E"
    assert StopFilter([]).feed("END") == ("END", False)
    assert StopFilter(["lo", "hello"]).feed("say hello") == ("say ", True)  # the earliest match wins


def test_chat_prompt_with_template_and_fallback(checkpoints, model_dir):
    plain = load_tokenizer(checkpoints.streamed("qwen3_moe"))
    assert not plain.has_chat_template
    assert fallback_prompt(MESSAGES) == ("System: Answer briefly.\n\nUser: Why does water boil?\n\nAssistant:")
    assert chat_tokens(plain, MESSAGES) == plain.encode(fallback_prompt(MESSAGES))
    # An earlier answer follows its "Assistant:" as the model wrote it there (a space only if it has none), so
    # the follow-up's prompt begins with the first prompt and the answer's own text.
    for answer, written in ((" Because it is hot.", " Because it is hot."), ("Because.", " Because.")):
        follow_up = [*MESSAGES, {"role": "assistant", "content": answer}, {"role": "user", "content": "And ice?"}]
        assert fallback_prompt(follow_up) == fallback_prompt(MESSAGES) + written + "\n\nUser: And ice?\n\nAssistant:"
    templated = load_tokenizer(model_dir)
    assert templated.decode(chat_tokens(templated, MESSAGES)) == (
        "<|im_start|>system\nAnswer briefly.<|im_end|>\n<|im_start|>user\nWhy does water boil?"
        "<|im_end|>\n<|im_start|>assistant\n"
    )


# --- the server ---------------------------------------------------------------------------


def test_info_endpoints(server, model_dir):
    status, models = server.request("GET", "/v1/models")
    assert status == 200 and [m["id"] for m in models["data"]] == [model_dir.name]
    status, tags = server.request("GET", "/api/tags")
    assert status == 200 and tags["models"][0]["name"] == model_dir.name + ":latest"
    assert tags["models"][0]["details"]["family"] == "qwen3_moe"
    assert tags["models"][0]["details"]["quantization_level"] == "Q4"
    assert server.request("GET", "/api/version")[1]["version"]
    h = server.health()
    assert h["status"] == "ok" and h["model"] == model_dir.name


def test_openai_chat_equals_engine_whole_and_streamed(server, engine, model_dir):
    ref = reference(engine, chat_prompt(engine, MESSAGES), 12)
    body = {"model": model_dir.name, "messages": MESSAGES, "max_tokens": 12, "temperature": 0}
    out = server.post("/v1/chat/completions", body)
    assert out["object"] == "chat.completion"
    assert out["choices"][0]["message"] == {"role": "assistant", "content": ref.text}
    assert out["choices"][0]["finish_reason"] == finish(ref, 12)
    usage = out["usage"]
    assert {k: usage[k] for k in ("prompt_tokens", "completion_tokens", "total_tokens")} == {
        "prompt_tokens": len(ref.prompt_tokens),
        "completion_tokens": len(ref.tokens),
        "total_tokens": len(ref.prompt_tokens) + len(ref.tokens),
    }
    assert 0 <= usage["prompt_tokens_details"]["cached_tokens"] < len(ref.prompt_tokens)
    chunks = server.sse(
        "/v1/chat/completions",
        {**body, "max_completion_tokens": 12, "max_tokens": 3, "stream_options": {"include_usage": True}},
    )
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
    assert text == ref.text
    assert [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]][-1] == finish(ref, 12)
    assert chunks[-1]["usage"]["completion_tokens"] == len(ref.tokens)
    assert len({c["id"] for c in chunks}) == 1


def test_a_follow_up_reports_the_prompt_tokens_it_reused(server, engine, model_dir):
    # The server keeps each prompt and its answer: a follow-up that carries them computes only what follows,
    # and says so in usage.prompt_tokens_details.cached_tokens; its answer is a fresh run's all the same.
    first = [{"role": "user", "content": "Water boils at one hundred degrees"}]
    body = {"model": model_dir.name, "messages": first, "max_tokens": 6, "temperature": 0}
    one = server.post("/v1/chat/completions", body)
    follow_up = [*first, one["choices"][0]["message"], {"role": "user", "content": "And at sea level?"}]
    ref = reference(engine, chat_prompt(engine, follow_up), 6)
    two = server.post("/v1/chat/completions", {**body, "messages": follow_up})
    assert two["choices"][0]["message"]["content"] == ref.text
    assert two["usage"]["prompt_tokens"] == len(ref.prompt_tokens)
    cached = two["usage"]["prompt_tokens_details"]["cached_tokens"]
    assert one["usage"]["prompt_tokens"] <= cached < len(ref.prompt_tokens)
    again = server.post("/v1/chat/completions", {**body, "messages": follow_up})
    assert again["usage"]["prompt_tokens_details"]["cached_tokens"] == len(ref.prompt_tokens) - 1
    assert again["choices"][0]["message"]["content"] == ref.text


def test_openai_completion_equals_engine(server, engine, model_dir):
    ref = reference(engine, SHORT_EOS, 64)
    assert len(ref.tokens) < 64  # the EOS ends it: finish_reason "stop"
    body = {"model": model_dir.name, "prompt": SHORT_EOS, "max_tokens": 64, "temperature": 0}
    out = server.post("/v1/completions", body)
    assert out["choices"][0]["text"] == ref.text
    assert out["choices"][0]["finish_reason"] == "stop"
    assert out["usage"]["prompt_tokens"] == len(ref.prompt_tokens)
    assert out["usage"]["completion_tokens"] == len(ref.tokens)
    chunks = server.sse("/v1/completions", body)
    assert "".join(c["choices"][0]["text"] for c in chunks) == ref.text
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    ids = server.post("/v1/completions", {**body, "prompt": ref.prompt_tokens})  # token ids
    assert ids["choices"][0]["text"] == ref.text


def test_ollama_generate_equals_engine(server, engine, model_dir):
    ref = reference(engine, LONG, 10)
    body = {"model": model_dir.name, "prompt": LONG, "raw": True, "options": {"temperature": 0, "num_predict": 10}}
    lines = server.ndjson("/api/generate", body)  # streaming is Ollama's default
    assert all(not x["done"] for x in lines[:-1]) and lines[-1]["done"]
    assert "".join(x["response"] for x in lines) == ref.text
    last = lines[-1]
    assert last["done_reason"] == "length"
    assert last["prompt_eval_count"] == len(ref.prompt_tokens) and last["eval_count"] == 10
    assert last["total_duration"] >= last["prompt_eval_duration"] + last["eval_duration"] > 0
    whole = server.post("/api/generate", {**body, "stream": False})
    assert whole["response"] == ref.text and whole["done"] and whole["eval_count"] == 10
    # Not raw: the prompt goes through the chat template as one user message.
    msgs = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": LONG}]
    ref = reference(engine, chat_prompt(engine, msgs), 10)
    templated = server.post("/api/generate", {**body, "raw": False, "system": "Be brief.", "stream": False})
    assert templated["response"] == ref.text
    assert templated["prompt_eval_count"] == len(ref.prompt_tokens)


def test_ollama_chat_equals_engine(server, engine, model_dir):
    ref = reference(engine, chat_prompt(engine, MESSAGES), 8)
    body = {"model": model_dir.name + ":latest", "messages": MESSAGES, "options": {"temperature": 0, "num_predict": 8}}
    lines = server.ndjson("/api/chat", body)
    assert "".join(x["message"]["content"] for x in lines) == ref.text
    assert lines[-1]["done"] and lines[-1]["eval_count"] == len(ref.tokens)
    whole = server.post("/api/chat", {**body, "stream": False})
    assert whole["message"] == {"role": "assistant", "content": ref.text}
    assert whole["done_reason"] == finish(ref, 8)
    loaded = server.post("/api/chat", {"model": model_dir.name, "messages": []})
    assert loaded["done"] and loaded["done_reason"] == "load"


def test_stop_strings(server, engine, model_dir):
    steps = list(llm_engine.stream_generate(engine, LONG, max_tokens=40))
    full = "".join(s.text for s in steps)
    # A stop string spanning two tokens' text, so it must be caught across deltas.
    pieces = [s.text for s in steps if s.text.isalnum()]
    stop = next(a[-1] + b[0] for a, b in zip(pieces, pieces[1:]) if full.find(a[-1] + b[0]) > 0)
    expected = full[: full.find(stop)]
    assert stop not in expected
    openai = {
        "model": model_dir.name,
        "prompt": LONG,
        "max_tokens": 40,
        "temperature": 0,
        "stop": [stop, "never appears \u2603"],
    }
    out = server.post("/v1/completions", openai)
    assert out["choices"][0] == {"index": 0, "text": expected, "logprobs": None, "finish_reason": "stop"}
    chunks = server.sse("/v1/completions", openai)
    assert "".join(c["choices"][0]["text"] for c in chunks) == expected
    ollama = {
        "model": model_dir.name,
        "prompt": LONG,
        "raw": True,
        "options": {"temperature": 0, "num_predict": 40, "stop": [stop]},
    }
    lines = server.ndjson("/api/generate", ollama)
    assert "".join(x["response"] for x in lines) == expected
    assert lines[-1]["done_reason"] == "stop" and lines[-1]["eval_count"] < 40


def test_two_concurrent_requests(server, engine, model_dir):
    prompts = ["The quick brown fox", "An offline library"]
    refs = [reference(engine, p, 24).text for p in prompts]
    results: dict = {}

    def ask(i: int) -> None:
        results[i] = server.post(
            "/v1/completions",
            {
                "model": model_dir.name,
                "prompt": prompts[i],
                "max_tokens": 24,
                "temperature": 0,
            },
        )["choices"][0]["text"]

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert [results.get(0), results.get(1)] == refs


def _wait_for(server: Server, pred, timeout: float = 30.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        h = server.health()
        if pred(h):
            return h
        time.sleep(0.05)
    pytest.fail(f"server health never matched: {h}")


def test_clients_that_disconnect_stop_their_generation(server, engine, model_dir):
    before = server.health()
    long_stream = {"model": model_dir.name, "prompt": LONG, "max_tokens": 1500, "temperature": 0, "stream": True}
    with server.raw_stream("/v1/completions", long_stream):
        # A second client queued behind it, gone before its turn.
        waiting = socket.create_connection(("127.0.0.1", server.port))
        data = json.dumps(long_stream).encode()
        waiting.sendall(b"POST /api/generate HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s" % (len(data), data))
        _wait_for(server, lambda h: h["queued"] == 1)
        waiting.close()
    # Both are cancelled (the running one at its next token, the queued one skipped), and
    # neither counts as served: 1500 tokens would take several seconds here.
    h = _wait_for(server, lambda h: h["cancelled"] == before["cancelled"] + 2 and not h["busy"])
    assert h["served"] == before["served"] and h["queued"] == 0
    ref = reference(engine, SHORT_EOS, 16)
    out = server.post(
        "/v1/completions", {"model": model_dir.name, "prompt": SHORT_EOS, "max_tokens": 16, "temperature": 0}
    )
    assert out["choices"][0]["text"] == ref.text


def test_bad_requests_get_json_errors_and_the_server_keeps_serving(server, model_dir):
    name = model_dir.name
    chat = {"model": name, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
    long_prompt = "The quick brown fox jumps over the lazy dog. " * 40
    assert len(load_tokenizer(model_dir).encode(long_prompt)) > PROMPT_LIMIT
    openai_cases = [
        ("/v1/chat/completions", b"{not json", 400, None),
        ("/v1/chat/completions", b"[1, 2]", 400, None),
        ("/v1/chat/completions", {"model": name}, 400, "messages"),
        ("/v1/chat/completions", {**chat, "messages": [{"role": "robot", "content": "x"}]}, 400, "messages[0].role"),
        ("/v1/chat/completions", {**chat, "messages": [{"role": "user", "content": 5}]}, 400, "messages[0].content"),
        ("/v1/chat/completions", {**chat, "model": "gpt-4"}, 404, "model"),
        ("/v1/chat/completions", {**chat, "max_tokens": 0}, 400, "max_tokens"),
        ("/v1/chat/completions", {**chat, "max_tokens": TOKENS_LIMIT + 1}, 400, "max_tokens"),
        ("/v1/chat/completions", {**chat, "temperature": "hot"}, 400, "temperature"),
        ("/v1/chat/completions", {**chat, "stop": 5}, 400, "stop"),
        ("/v1/chat/completions", {**chat, "stream": "yes"}, 400, "stream"),
        ("/v1/chat/completions", {**chat, "n": 2}, 400, "n"),
        ("/v1/completions", {"model": name, "prompt": []}, 400, "prompt"),
        ("/v1/completions", {"model": name, "prompt": [1, 999999]}, 400, None),
        ("/v1/completions", {"model": name, "prompt": long_prompt}, 400, None),
        ("/v1/completions", {"model": name, "prompt": long_prompt, "stream": True}, 400, None),
    ]
    for path, body, status, param in openai_cases:
        got, out = server.request(
            "POST", path, raw=body if isinstance(body, bytes) else None, body=None if isinstance(body, bytes) else body
        )
        assert got == status, (body, out)
        assert isinstance(out["error"]["message"], str) and out["error"]["message"], out
        assert out["error"]["param"] == param, (body, out)
    got, out = server.request("POST", "/v1/completions", {"model": name, "prompt": long_prompt})
    assert f"at most {PROMPT_LIMIT}" in out["error"]["message"]

    ollama_cases = [
        ("/api/generate", b"nope", 400),
        ("/api/generate", {"prompt": "hi"}, 400),
        ("/api/generate", {"model": "llama3", "prompt": "hi"}, 404),
        ("/api/chat", {"model": name, "messages": "hi"}, 400),
        ("/api/chat", {**chat, "options": {"num_predict": "x"}}, 400),
        ("/api/chat", {**chat, "options": {"temperature": -1}}, 400),
        ("/api/chat", {**chat, "messages": [{"role": "user", "content": long_prompt}]}, 400),
        ("/api/generate", {"model": name, "prompt": "hi", "images": ["aGk="]}, 400),
    ]
    for path, body, status in ollama_cases:
        got, out = server.request(
            "POST", path, raw=body if isinstance(body, bytes) else None, body=None if isinstance(body, bytes) else body
        )
        assert got == status and isinstance(out["error"], str) and out["error"], (body, out)

    assert server.request("GET", "/v1/chat/completions")[0] == 405
    assert server.request("GET", "/nowhere")[0] == 404
    assert server.request("POST", "/api/tags", {})[0] == 405
    loaded = server.post("/api/generate", {"model": name})  # Ollama's "load the model"
    assert loaded["done"] and loaded["done_reason"] == "load"
    assert server.post("/v1/chat/completions", chat)["choices"][0]["message"]["role"] == "assistant"
    assert server.health()["status"] == "ok"


def test_the_real_openai_client(server, engine, model_dir):
    import openai

    client = openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0)
    assert [m.id for m in client.models.list()] == [model_dir.name]
    ref = reference(engine, chat_prompt(engine, MESSAGES), 8)
    r = client.chat.completions.create(model=model_dir.name, messages=MESSAGES, max_tokens=8, temperature=0)
    assert r.choices[0].message.content == ref.text
    assert r.usage.completion_tokens == len(ref.tokens)
    stream = client.chat.completions.create(
        model=model_dir.name, messages=MESSAGES, max_tokens=8, temperature=0, stream=True
    )
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == ref.text
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="gpt-4o", messages=MESSAGES)
    with pytest.raises(openai.BadRequestError, match="at most"):
        client.completions.create(model=model_dir.name, prompt="x " * 400)


def test_the_real_ollama_client(server, engine, model_dir):
    import ollama

    client = ollama.Client(host=server.url)
    assert [m.model for m in client.list().models] == [model_dir.name + ":latest"]
    ref = reference(engine, chat_prompt(engine, MESSAGES), 8)
    options = {"temperature": 0, "num_predict": 8}
    r = client.chat(model=model_dir.name, messages=MESSAGES, options=options)
    assert r.message.content == ref.text and r.eval_count == len(ref.tokens)
    parts = client.chat(model=model_dir.name, messages=MESSAGES, options=options, stream=True)
    assert "".join(p.message.content for p in parts) == ref.text
    ref = reference(engine, LONG, 6)
    g = client.generate(model=model_dir.name, prompt=LONG, raw=True, options={"temperature": 0, "num_predict": 6})
    assert g.response == ref.text and g.done_reason == "length"
    with pytest.raises(ollama.ResponseError) as e:
        client.chat(model="llama3", messages=MESSAGES)
    assert e.value.status_code == 404


def test_an_engine_failure_is_a_500_and_the_server_stays_up(checkpoints, tmp_path):
    broken = shutil.copytree(checkpoints.streamed("qwen3_moe"), tmp_path / "broken")
    layer = json.loads((broken / "manifest.json").read_text())["layers"][0]
    with open(broken / layer["file"], "r+b") as f:  # same size, every expert's CRC wrong
        for e in range(layer["num_experts"]):
            f.seek(e * layer["stride"])
            byte = f.read(1)
            f.seek(e * layer["stride"])
            f.write(bytes([byte[0] ^ 0xFF]))
    with running(broken) as (p, server):
        body = {"model": "broken", "prompt": "Hello", "max_tokens": 4}
        for _ in range(2):
            status, out = server.request("POST", "/v1/completions", body)
            assert status == 500 and "layer-000.bin" in out["error"]["message"], out
            assert out["error"]["type"] == "server_error"
        lines = server.ndjson("/api/generate", {**body, "raw": True})  # failed mid-stream
        assert "layer-000.bin" in lines[-1]["error"]
        assert server.health()["failed"] == 3
        p.terminate()
        assert p.wait(30) == 0


def test_batched_server_answers_as_one_at_a_time(model_dir, engine):
    """--max-batch 3: concurrent requests decode together and each gets its single-run answer."""
    prompts = ["The quick brown fox", "An offline library", "Why does water boil?"]
    refs = [reference(engine, p, 20).text for p in prompts]
    with running(model_dir, "--max-batch", "3") as (p, server):
        if on_cpu():  # the server says which BLAS and decode kernels its CPU runs (cpu_blas.py, cpu_quantized.py)
            said = "CPU matmuls on " + ("OpenBLAS " if cpu_blas.bound() else "the MLX wheel's BLAS (")
            deadline = time.monotonic() + 10  # written before the line saying it serves; read by another thread
            while not any(line.startswith(said) for line in p.stderr_lines) and time.monotonic() < deadline:
                time.sleep(0.05)
            assert any(line.startswith(said) for line in p.stderr_lines), p.stderr_lines[:3]
            line = next(line for line in p.stderr_lines if line.startswith(said))
            assert line.rstrip().endswith("; " + cpu_quantized.describe()), line
        results: dict = {}

        def ask(i: int) -> None:
            body = {"model": model_dir.name, "prompt": prompts[i], "max_tokens": 20, "temperature": 0}
            results[i] = server.post("/v1/completions", body)["choices"][0]["text"]

        threads = [threading.Thread(target=ask, args=(i,)) for i in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        assert [results.get(i) for i in range(3)] == refs
        health = server.health()
        assert health["served"] == 3 and health["largest_batch"] >= 2
        # A stop string ends one sequence of the batch; a client that leaves cancels its own.
        stopped = server.post(
            "/v1/completions",
            {"model": model_dir.name, "prompt": prompts[0], "max_tokens": 20, "temperature": 0, "stop": [refs[0][5:9]]},
        )["choices"][0]
        assert stopped["text"] == refs[0][: refs[0].index(refs[0][5:9])] and stopped["finish_reason"] == "stop"
        with server.raw_stream(
            "/v1/completions", {"model": model_dir.name, "prompt": LONG, "max_tokens": 1500, "stream": True}
        ):
            _wait_for(server, lambda h: h["busy"])
        _wait_for(server, lambda h: h["cancelled"] >= 1 and not h["busy"])


@pytest.mark.skipif(not compiled_kernels(), reason="no compiled CPU kernels (Numba) here")
def test_the_server_caches_its_compiled_kernels_in_the_data_dir(model_dir, tmp_path):
    """The system service may write only its data dir: the CPU kernels are cached there (cache/kernels),
    so a restart does not compile them again."""
    import os

    data = tmp_path / "data"
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONPATH=str(ROOT), ALMANAC_DATA=str(data))
    env.pop("NUMBA_CACHE_DIR", None)
    with model_serve(model_dir, env=env) as (p, url):
        server = Server(url, int(url.rsplit(":", 1)[1]))
        out = server.post("/v1/completions", {"model": model_dir.name, "prompt": "Hello", "max_tokens": 3})
        assert out["choices"][0]["text"] is not None
    assert list((data / "cache" / "kernels").rglob("*.nbi")), sorted(p.name for p in data.rglob("*"))
