"""Run the portal under gunicorn in this process, with its helper processes beside it: the downloader (it resumes
the download jobs), the answer runner and the model servers when they are configured."""

from __future__ import annotations

from gunicorn.app.base import BaseApplication

from ..config import Config
from ..datadir import DataDir
from .answer_runner import start_runner
from .download_process import start_download_process
from .model_process import start_model_servers, stop_child


class _Gunicorn(BaseApplication):
    def __init__(self, options: dict, config: Config):
        self.options, self.almanac_config = options, config
        super().__init__()

    def load_config(self):
        for key, value in self.options.items():
            if key in self.cfg.settings:  # newer gunicorn options are skipped on older releases
                self.cfg.set(key, value)

    def load(self):
        from ..web import create_app

        return create_app(self.almanac_config)


def gunicorn_options(config: Config, data: DataDir, host: str, port: int, workers: int) -> dict:
    bind = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    return {
        "bind": [bind],
        "workers": workers,
        "worker_class": "gthread",
        "threads": config.get("server.threads"),
        "timeout": config.get("server.timeout"),
        "graceful_timeout": 10,
        "keepalive": 5,
        "pidfile": str(data.pidfile),
        "accesslog": "-" if config.get("log_level") == "debug" else None,
        "errorlog": "-",
        "loglevel": config.get("log_level"),
        "proc_name": "almanac",
        # The app is built in each worker, so an archive opened by one worker is never shared across a fork.
        "preload_app": False,
        # gunicorn >= 24 opens a control socket under $HOME, which a sandboxed service user may not have.
        "control_socket_disable": True,
    }


def serve(config: Config, data: DataDir, host: str, port: int, workers: int) -> None:
    """Serve until gunicorn is told to stop (SIGTERM, SIGINT); the model servers, the answer runner and the
    downloader, if started, stop with it."""
    children = start_model_servers(config, data)
    runner = start_runner(config, data)
    if runner is not None:
        children.insert(0, runner)  # stopped first: it hands its job back to the queue before the model goes
    children.insert(0, start_download_process(config, data))
    try:
        _Gunicorn(gunicorn_options(config, data, host, port, workers), config).run()
    finally:
        for child in children:
            stop_child(child)
