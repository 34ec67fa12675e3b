"""The engine over HTTP: an OpenAI- and Ollama-compatible server on the standard library.

    worker = Worker.start(path, max_prompt_tokens=8192)   # the one thread that owns the model
    server = make_server(worker, host, port, limits)      # or serve(path, ...) to block until a signal

`http_server.py` is the HTTP side, `worker.py` the model thread, `openai_api.py` / `ollama_api.py` the two
APIs' request and response shapes, `fields.py` their field checks, `prompts.py` chat prompts and `stops.py`
stop strings.
"""

from .http_server import make_server, serve
from .worker import Job, Worker

__all__ = ["Job", "Worker", "make_server", "serve"]
