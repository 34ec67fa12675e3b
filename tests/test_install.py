"""install.sh, run for real: into a temporary prefix, then the installed portal served and fetched over HTTP.

One module-scoped install serves every test here (it is the expensive part). With ALMANAC_WHEELHOUSE set (the
test runner builds one) the install uses --wheelhouse, i.e. no network at all; without it, pip goes online.
The tests that re-run or remove the install come last, in file order.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tarfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
INSTALL_SH = ROOT / "install.sh"
INSTALL_TIMEOUT = 1200  # a cold online install downloads MLX, numpy and libzim


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def clean_env() -> dict[str, str]:
    """The caller's environment without Almanac overrides, which would redirect the installed CLI.

    With a wheelhouse, pip's own settings go too (no config files, no PIP_* variables): extra package
    sources configured on this machine must not stand in for a wheel the wheelhouse lacks.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("ALMANAC_")}
    if os.environ.get("ALMANAC_WHEELHOUSE"):
        env = {k: v for k, v in env.items() if not k.startswith("PIP_")}
        env["PIP_CONFIG_FILE"] = os.devnull
    return env


def run_install(*args: str, timeout: float = INSTALL_TIMEOUT, path: str | None = None) -> subprocess.CompletedProcess:
    env = clean_env() if path is None else {**clean_env(), "PATH": path}
    return subprocess.run(
        ["bash", str(INSTALL_SH), *args], capture_output=True, text=True, timeout=timeout, env=env, cwd="/"
    )


def path_without(folder: Path, *hidden: str) -> str:
    """A PATH of one folder that links every program of this PATH but `hidden`: install.sh then runs as it
    does on a machine without them, whatever this host has."""
    folder.mkdir()
    for directory in os.environ["PATH"].split(os.pathsep):
        if not os.path.isdir(directory):
            continue
        for name in os.listdir(directory):
            target = os.path.join(directory, name)
            if name not in hidden and not (folder / name).exists() and os.access(target, os.X_OK):
                (folder / name).symlink_to(target)
    return str(folder)


def source_args() -> list[str]:
    wheelhouse = os.environ.get("ALMANAC_WHEELHOUSE")
    if not wheelhouse:
        return []
    # The wheelhouse holds binary wheels built for the Python running the tests, so install with that one.
    return ["--wheelhouse", wheelhouse, "--python", sys.executable]


def get(url: str, timeout: float = 10) -> tuple[int, str, str]:
    """(status, content type, body) of a GET, following redirects as a browser does."""
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.status, r.headers.get("Content-Type", ""), r.read().decode("utf-8", "replace")


def wait_healthy(port: int, proc: subprocess.Popen, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail(f"installed server exited with {proc.returncode}:\n{out}\n{err}")
        try:
            status, _, body = get(f"http://127.0.0.1:{port}/healthz", timeout=2)
            if status == 200:
                return json.loads(body)
        except (OSError, ValueError):
            pass
        time.sleep(0.3)
    pytest.fail(f"installed server did not answer on port {port} within {timeout} s")


class Install:
    def __init__(self, base: Path):
        self.base = base
        self.prefix = base / "prefix"
        self.data = base / "data"
        self.config = self.prefix / "etc" / "config.yaml"  # the default when --prefix is given
        self.port = free_port()
        self.first_run: subprocess.CompletedProcess | None = None

    @property
    def wrapper(self) -> Path:
        return self.prefix / "bin" / "almanac"

    def flags(self) -> list[str]:
        return ["--prefix", str(self.prefix), "--data-dir", str(self.data), "--no-service", "--no-start"]

    def almanac(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        return subprocess.run(
            [str(self.wrapper), *args], capture_output=True, text=True, timeout=timeout, env=clean_env(), cwd="/"
        )

    def serve(self) -> subprocess.Popen:
        return subprocess.Popen(
            [str(self.wrapper), "serve", "--host", "127.0.0.1", "--port", str(self.port)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=clean_env(),
            cwd="/",
            start_new_session=True,
        )


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    proc.communicate()


def one_line(text: str) -> str:
    lines = [ln for ln in text.splitlines() if ln.strip()]
    assert len(lines) == 1, f"expected a one-line reason, got:\n{text}"
    return lines[0]


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Install:
    inst = Install(tmp_path_factory.mktemp("install"))
    done = run_install(*inst.flags(), "--port", str(inst.port), *source_args())
    assert done.returncode == 0, f"install.sh failed ({done.returncode}):\n{done.stdout}\n{done.stderr}"
    inst.first_run = done
    yield inst
    # Whatever the tests left behind: stop a background server, then remove everything.
    if inst.wrapper.exists():
        inst.almanac("stop")
    shutil.rmtree(inst.base, ignore_errors=True)


# -- failures before anything is touched -----------------------------------------------------------------
def test_unknown_flag_is_a_usage_error(tmp_path):
    done = run_install("--frobnicate", "--prefix", str(tmp_path / "p"), timeout=30)
    assert done.returncode == 2
    line = one_line(done.stderr)
    assert "unknown option '--frobnicate'" in line and "--help" in line
    assert not (tmp_path / "p").exists()


@pytest.mark.parametrize("port", ["99999", "0", "http", ""])
def test_bad_port_is_refused_with_one_line(tmp_path, port):
    done = run_install("--prefix", str(tmp_path / "p"), "--port", port, timeout=30)
    assert done.returncode != 0
    assert "--port" in one_line(done.stderr)
    assert not (tmp_path / "p").exists()


def test_python_that_does_not_run_is_refused(tmp_path):
    done = run_install(
        "--prefix",
        str(tmp_path / "p"),
        "--data-dir",
        str(tmp_path / "d"),
        "--no-service",
        "--python",
        "/bin/false",
        timeout=30,
    )
    assert done.returncode == 1
    assert "not a working Python" in one_line(done.stderr)
    assert not (tmp_path / "p").exists() and not (tmp_path / "d").exists()


def test_missing_wheelhouse_is_refused(tmp_path):
    done = run_install(
        "--prefix",
        str(tmp_path / "p"),
        "--data-dir",
        str(tmp_path / "d"),
        "--no-service",
        "--wheelhouse",
        str(tmp_path / "nowhere"),
        timeout=60,
    )
    assert done.returncode == 1
    assert "is not a directory" in one_line(done.stderr)
    assert not (tmp_path / "p").exists()


def test_make_wheelhouse_goes_with_no_other_action(tmp_path):
    done = run_install("--make-wheelhouse", str(tmp_path / "wh"), "--wheelhouse", str(tmp_path), timeout=30)
    assert done.returncode == 2
    assert "--make-wheelhouse goes with no other action" in one_line(done.stderr)
    assert not (tmp_path / "wh").exists()


def test_purge_refuses_a_folder_that_is_not_almanac_data(tmp_path):
    precious = tmp_path / "home-ish"
    precious.mkdir()
    (precious / "thesis.txt").write_text("years of work")
    done = run_install(
        "--uninstall", "--purge", "--prefix", str(tmp_path / "p"), "--data-dir", str(precious), timeout=60
    )
    assert done.returncode == 1
    assert "not deleting" in done.stderr
    assert (precious / "thesis.txt").read_text() == "years of work"


def test_help_lists_every_flag():
    done = run_install("--help", timeout=30)
    assert done.returncode == 0
    for flag in (
        "--prefix",
        "--data-dir",
        "--config",
        "--port",
        "--admin-password-file",
        "--no-service",
        "--no-start",
        "--uninstall",
        "--purge",
        "--wheelhouse",
        "--make-wheelhouse",
        "--python",
        "--print-service",
        "--service-kind",
    ):
        assert flag in done.stdout, flag


def test_install_sh_is_shellcheck_clean():
    if shutil.which("shellcheck") is None:
        pytest.skip("shellcheck is not installed (apt-get install shellcheck)")
    done = subprocess.run(["shellcheck", str(INSTALL_SH)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


# -- the installed result -------------------------------------------------------------------------------------
def test_install_lays_out_prefix_config_and_data(installed):
    assert os.access(installed.wrapper, os.X_OK)
    assert (installed.prefix / "venv" / "bin" / "almanac").exists()
    text = installed.config.read_text()
    assert "appliance/defaults.yaml" in text  # the header points at the documented defaults
    assert f"port: {installed.port}" in text and str(installed.data) in text
    for folder in ("archives", "maps", "models", "logs"):
        assert (installed.data / folder).is_dir(), folder
    assert (installed.data / "archives" / "almanac-handbook.zim").stat().st_size > 10_000
    # A --prefix install leaves the `almanac` on PATH alone.
    for link in (Path("/usr/local/bin/almanac"), Path.home() / ".local" / "bin" / "almanac"):
        assert not (link.is_symlink() and str(installed.prefix) in os.readlink(link))


def test_install_ends_with_urls_and_locations(installed):
    out = installed.first_run.stdout
    urls = [ln.strip() for ln in out.splitlines() if ln.strip().startswith("http://")]
    assert urls and all(u.endswith(f":{installed.port}/") for u in urls), out
    assert f"Configuration: {installed.config}" in out
    assert f"Data:          {installed.data}" in out


def _generated_password(out: str) -> str:
    [line] = [ln for ln in out.splitlines() if "admin password:" in ln]
    return line.split("admin password: ", 1)[1].split(" (shown only now", 1)[0]


def test_install_makes_an_admin_password_prints_it_once_and_stores_only_its_hash(installed):
    from appliance.admin_password import check

    out = installed.first_run.stdout
    password = _generated_password(out)
    assert len(password) == 23 and out.count(password) == 1, out
    stored = installed.data / "admin-password"
    assert stat.S_IMODE(stored.stat().st_mode) == 0o600 and password not in stored.read_text()
    assert check(installed.data, password)
    assert "Console:       /admin/ on those addresses" in out


def test_installed_cli_runs_from_the_venv(installed):
    done = installed.almanac("version")
    assert done.returncode == 0, done.stderr
    version = done.stdout.strip()
    assert version and version[0].isdigit()
    shown = installed.almanac("config", "show")
    assert shown.returncode == 0, shown.stderr
    assert f"# from: {installed.config}" in shown.stdout
    assert f"data_dir: {installed.data}" in shown.stdout


def test_installed_server_answers_healthz_home_and_handbook(installed):
    proc = installed.serve()
    try:
        health = wait_healthy(installed.port, proc)
        assert health["status"] == "ok"
        assert health["version"] == installed.almanac("version").stdout.strip()
        assert health["installed"]["books"] == 1  # the handbook, built and registered by install.sh
        assert isinstance(health["uptime_s"], (int, float))

        status, ctype, body = get(f"http://127.0.0.1:{installed.port}/")
        assert status == 200 and ctype.startswith("text/html")
        assert "Almanac Handbook" in body  # the library card lists the embedded book

        status, ctype, body = get(f"http://127.0.0.1:{installed.port}/content/almanac-handbook/")
        assert status == 200 and ctype.startswith("text/html")
        # The handbook's front page is docs/index.md; its first heading must be in the served page.
        heading = next(
            ln.lstrip("# ").strip()
            for ln in (ROOT / "docs" / "index.md").read_text().splitlines()
            if ln.startswith("# ")
        )
        assert heading in body

        # The offline world map and the place index were built by install.sh, with no download.
        status, ctype, body = get(f"http://127.0.0.1:{installed.port}/maps/search?q=helsinki")
        assert status == 200 and json.loads(body)[0]["name"] == "Helsinki"
        status, ctype, body = get(f"http://127.0.0.1:{installed.port}/maps/style.json")
        assert status == 200 and "pm-world" in json.loads(body)["sources"]

        # status and doctor against the running server.
        done = installed.almanac("status")
        assert done.returncode == 0, done.stderr
        lines = done.stdout.splitlines()
        assert f"config:   {installed.config}" in lines
        assert f"data:     {installed.data}" in lines
        assert "books:    1" in lines
        assert any(ln.strip().startswith("- almanac-handbook: Almanac Handbook") for ln in lines)
        assert f"portal:   answering on port {installed.port}" in lines

        done = installed.almanac("doctor")
        assert done.returncode == 0, done.stdout + done.stderr
        checks = {
            ln.split()[1].rstrip(":"): ln.split()[0] for ln in done.stdout.splitlines() if ln.startswith(("OK", "FAIL"))
        }
        assert set(checks) >= {"python", "data", "disk", "library", "libzim", "mlx", "port"}
        assert set(checks.values()) == {"OK"}
        python_line = next(ln for ln in done.stdout.splitlines() if ln.split()[1] == "python:")
        assert str(installed.prefix / "venv") in python_line  # the installed copy, not the checkout
        assert f"port: {installed.port} is served by Almanac" in done.stdout
    finally:
        stop(proc)


def test_offline_install_gets_maplibre_for_labels_from_the_wheelhouse(installed):
    """tests/run.sh makes the wheelhouse with --make-wheelhouse, which adds `npm pack`'s maplibre-gl tarball;
    install.sh --wheelhouse unpacks it with no network, so the map has place names."""
    from content.maps.vendor import newest_tarball

    wheelhouse = os.environ.get("ALMANAC_WHEELHOUSE")
    tarball = newest_tarball(Path(wheelhouse)) if wheelhouse else None
    if tarball is None:
        pytest.skip("no maplibre-gl-*.tgz in $ALMANAC_WHEELHOUSE (unset, or npm pack failed in tests/run.sh)")
    with tarfile.open(tarball) as tar:
        version = json.load(tar.extractfile("package/package.json"))["version"]
        js = tar.extractfile("package/dist/maplibre-gl.js").read()
    assert tuple(int(p) for p in version.split(".")) >= (5, 11, 0)
    assert f"map viewer: MapLibre GL JS {version} from tarball" in installed.first_run.stdout
    proc = installed.serve()
    try:
        wait_healthy(installed.port, proc)
        _, _, body = get(f"http://127.0.0.1:{installed.port}/maps?format=json")
        assert json.loads(body)["maplibre"] == {"version": version, "origin": "tarball", "local_glyphs": True}
        _, _, body = get(f"http://127.0.0.1:{installed.port}/maps/style.json")
        style = json.loads(body)
        assert "glyphs" not in style  # the browser's own fonts draw the names
        text = [
            layer["id"] for layer in style["layers"] if layer["type"] == "symbol" and "text-field" in layer["layout"]
        ]
        assert any(t.endswith("-locality-label") for t in text) and any(t.endswith("-country-label") for t in text)
        with urllib.request.urlopen(f"http://127.0.0.1:{installed.port}/maps/vendor/maplibre-gl.js", timeout=10) as r:
            assert r.read() == js  # the very file from the tarball, served from the data dir
    finally:
        stop(proc)


def test_rerun_upgrades_and_keeps_data_and_config(installed):
    marker = installed.data / "keep-me.txt"
    marker.write_text("mine")
    password_hash = (installed.data / "admin-password").read_text()
    done = installed.almanac("config", "set", "portal.title", "Test Box")
    assert done.returncode == 0, done.stderr
    zim = installed.data / "archives" / "almanac-handbook.zim"
    before = zim.stat().st_mtime_ns
    venv_python = (installed.prefix / "venv" / "bin" / "python").resolve()
    new_port = free_port()

    done = run_install(*installed.flags(), "--port", str(new_port), *source_args())
    assert done.returncode == 0, f"re-run failed:\n{done.stdout}\n{done.stderr}"
    installed.port = new_port

    assert marker.read_text() == "mine"
    shown = installed.almanac("config", "show").stdout
    assert "title: Test Box" in shown  # a key the user set survives
    assert f"port: {new_port}" in shown  # --port on a re-run changes the existing file
    assert "reusing the virtual environment" in done.stdout
    assert (installed.prefix / "venv" / "bin" / "python").resolve() == venv_python
    assert zim.stat().st_mtime_ns != before  # the handbook is rebuilt from the (maybe upgraded) docs
    listed = installed.almanac("content", "list").stdout.splitlines()
    assert [ln.split("\t")[0] for ln in listed] == ["almanac-handbook"]
    assert (installed.data / "admin-password").read_text() == password_hash  # the admin password is kept
    assert "admin password: kept from the earlier install" in done.stdout


def test_without_systemd_it_says_so_and_starts_in_background(installed, tmp_path):
    # systemctl is hidden from install.sh, so this runs (and installs no real service) on any host.
    from appliance.admin_password import check

    flags = [f for f in installed.flags() if f not in ("--no-service", "--no-start")]
    secret = tmp_path / "admin-password.txt"
    secret.write_text("chosen by the owner\n")
    flags += ["--admin-password-file", str(secret)]  # given on a re-run, it changes the password
    done = run_install(*flags, *source_args(), path=path_without(tmp_path / "bin", "systemctl", "launchctl"))
    try:
        assert done.returncode == 0, f"{done.stdout}\n{done.stderr}"
        assert check(installed.data, "chosen by the owner") and "chosen by the owner" not in done.stdout
        assert "no systemd running here" in done.stdout
        assert f"{installed.wrapper} serve" in done.stdout  # how to start it by hand
        assert "will not survive a reboot" in done.stdout
        status, _, body = get(f"http://127.0.0.1:{installed.port}/healthz")
        assert status == 200 and json.loads(body)["status"] == "ok"
    finally:
        stopped = installed.almanac("stop")
    assert stopped.stdout.startswith("stopped"), stopped.stdout + stopped.stderr


def test_uninstall_keeps_data_and_config(installed):
    marker = installed.data / "keep-me.txt"
    marker.write_text("mine")
    done = run_install("--uninstall", *installed.flags(), timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert not installed.wrapper.exists()
    assert not (installed.prefix / "venv").exists()
    assert marker.read_text() == "mine"
    assert (installed.data / "archives" / "almanac-handbook.zim").exists()
    assert installed.config.exists()
    assert "Kept: data in" in done.stdout

    again = run_install("--uninstall", *installed.flags(), timeout=120)
    assert again.returncode == 0, again.stdout + again.stderr  # idempotent
    assert marker.exists() and installed.config.exists()


def test_uninstall_purge_removes_data_config_and_prefix(installed):
    done = run_install("--uninstall", "--purge", *installed.flags(), timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert not installed.data.exists()
    assert not installed.config.exists()
    assert not installed.prefix.exists()
    again = run_install("--uninstall", "--purge", *installed.flags(), timeout=120)
    assert again.returncode == 0, again.stdout + again.stderr
