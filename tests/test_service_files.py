"""The service files install.sh renders: systemd units checked by systemd-analyze, launchd plists by plistlib.

Rendering goes through `install.sh --print-service`, the same code path the installer uses to write them.
systemd-analyze verify insists that ExecStart's program exists, so the prefix gets a real executable
bin/almanac (a shell script) for it to find.
"""

from __future__ import annotations

import os
import plistlib
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
INSTALL_SH = ROOT / "install.sh"
TEMPLATES = ROOT / "systemd"


def render(kind: str, prefix: Path, data: Path, *extra: str) -> str:
    done = subprocess.run(
        [
            "bash",
            str(INSTALL_SH),
            "--print-service",
            "--service-kind",
            kind,
            "--prefix",
            str(prefix),
            "--data-dir",
            str(data),
            *extra,
        ],
        capture_output=True,
        text=True,
        timeout=30,
        cwd="/",
    )
    assert done.returncode == 0, done.stderr
    left = re.findall(r"@[A-Z_]+@", done.stdout)
    assert not left, f"placeholders left unrendered: {left}"
    return done.stdout


def unit_settings(text: str) -> dict[str, dict[str, list[str]]]:
    """[Section] -> key -> values, the way systemd reads a unit (comments skipped, keys may repeat)."""
    sections: dict[str, dict[str, list[str]]] = {}
    current = None
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        key, _, value = line.partition("=")
        current.setdefault(key, []).append(value)
    return sections


@pytest.fixture
def prefix(tmp_path) -> Path:
    """A prefix (with a space, as a Mac user's folder may have) whose bin/almanac really exists."""
    prefix = tmp_path / "Almanac box"
    (prefix / "bin").mkdir(parents=True)
    exe = prefix / "bin" / "almanac"
    exe.write_text("#!/bin/sh\nexit 0\n")
    exe.chmod(0o755)
    return prefix


def systemd_analyze() -> str:
    path = shutil.which("systemd-analyze")
    if path is None:
        pytest.skip("systemd-analyze is missing (Debian: apt-get install systemd; tests/run.sh does it as root)")
    return path


def verify(unit_text: str, tmp_path: Path, user: bool) -> None:
    folder = tmp_path / ("user-unit" if user else "system-unit")
    folder.mkdir()
    unit = folder / "almanac.service"  # verify reads the unit type from the file name
    unit.write_text(unit_text)
    cmd = [systemd_analyze(), *(["--user"] if user else []), "verify", str(unit)]
    env = dict(os.environ)
    if user:
        # A user manager needs a runtime dir; outside a login session there is none, so give it a private one.
        runtime = tmp_path / "runtime"
        runtime.mkdir(mode=0o700)
        env["XDG_RUNTIME_DIR"] = str(runtime)
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=60, env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    # verify exits 0 on unknown keys and bad values, only warning about them: any line naming the unit fails.
    complaints = [ln for ln in (done.stdout + done.stderr).splitlines() if "almanac.service" in ln]
    assert not complaints, "\n".join(complaints)


def test_system_unit_passes_systemd_analyze_verify(tmp_path, prefix):
    data = tmp_path / "data"
    text = render("systemd", prefix, data)
    verify(text, tmp_path, user=False)

    s = unit_settings(text)
    service = s["Service"]
    assert service["ExecStart"] == [f'"{prefix}/bin/almanac" serve']
    assert service["User"] == ["almanac"]
    assert service["Environment"] == [f'"ALMANAC_CONFIG={prefix}/etc/config.yaml"']
    assert service["ReadWritePaths"] == [f'"{data}"']
    for key, value in (
        ("NoNewPrivileges", "yes"),
        ("ProtectSystem", "strict"),
        ("PrivateTmp", "yes"),
        ("ProtectHome", "yes"),
        ("Restart", "on-failure"),
    ):
        assert service[key] == [value], key
    assert int(service["RestartSec"][0]) > 0
    assert s["Unit"]["After"] == ["network-online.target"] and s["Unit"]["Wants"] == ["network-online.target"]
    assert s["Install"]["WantedBy"] == ["multi-user.target"]


def test_system_unit_under_home_relaxes_protecthome_to_read_only(tmp_path, prefix):
    # /home itself would be hidden by ProtectHome=yes, and a hidden tree cannot be reopened below it.
    text = render("systemd", prefix, Path("/home/someone/almanac-data"), "--config", str(tmp_path / "c.yaml"))
    verify(text, tmp_path, user=False)
    service = unit_settings(text)["Service"]
    assert service["ProtectHome"] == ["read-only"]
    assert service["ReadWritePaths"] == ['"/home/someone/almanac-data"']


def test_system_unit_takes_the_service_user_flag(tmp_path, prefix):
    text = render("systemd", prefix, tmp_path / "data", "--service-user", "library")
    assert unit_settings(text)["Service"]["User"] == ["library"]


def test_user_unit_passes_systemd_analyze_verify(tmp_path, prefix):
    data = tmp_path / "data"
    text = render("systemd-user", prefix, data)
    verify(text, tmp_path, user=True)
    s = unit_settings(text)
    assert "User" not in s["Service"]
    assert s["Service"]["ExecStart"] == [f'"{prefix}/bin/almanac" serve']
    assert s["Service"]["Environment"] == [f'"ALMANAC_CONFIG={prefix}/etc/config.yaml"']
    assert s["Service"]["Restart"] == ["on-failure"]
    assert s["Install"]["WantedBy"] == ["default.target"]


def test_launchd_daemon_plist(tmp_path, prefix):
    data = tmp_path / "data"
    plist = plistlib.loads(render("launchd", prefix, data).encode())
    assert plist["Label"] == "org.almanac.server"
    assert plist["ProgramArguments"] == [f"{prefix}/bin/almanac", "serve"]
    assert plist["RunAtLoad"] is True and plist["KeepAlive"] is True
    assert plist["EnvironmentVariables"]["ALMANAC_CONFIG"] == f"{prefix}/etc/config.yaml"
    assert plist["UserName"] == "_almanac"  # a boot-time daemon runs as its own role account
    assert Path(plist["StandardOutPath"]).parent == data / "logs"
    assert Path(plist["StandardErrorPath"]).parent == data / "logs"


def test_launchd_agent_plist_has_no_user(tmp_path, prefix):
    plist = plistlib.loads(render("launchd-agent", prefix, tmp_path / "data").encode())
    assert plist["Label"] == "org.almanac.server"
    assert "UserName" not in plist and "GroupName" not in plist
    assert plist["RunAtLoad"] is True and plist["KeepAlive"] is True
    assert plist["EnvironmentVariables"]["ALMANAC_CONFIG"] == f"{prefix}/etc/config.yaml"


def test_launchd_plist_passes_plutil_where_available(tmp_path, prefix):
    plutil = shutil.which("plutil")
    if plutil is None:
        pytest.skip("plutil exists only on macOS")
    path = tmp_path / "org.almanac.server.plist"
    path.write_text(render("launchd", prefix, tmp_path / "data"))
    done = subprocess.run([plutil, "-lint", str(path)], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stdout + done.stderr


def test_templates_carry_the_placeholders_install_sh_fills():
    for name in ("almanac.service", "almanac-user.service", "org.almanac.server.plist"):
        text = (TEMPLATES / name).read_text()
        assert "@EXEC@" in text and "@CONFIG@" in text, name
    assert "@DATA_DIR@" in (TEMPLATES / "almanac.service").read_text()
    assert "@USER@" in (TEMPLATES / "almanac.service").read_text()
    assert "@USER@" in (TEMPLATES / "org.almanac.server.plist").read_text()


def test_unsafe_paths_are_refused(tmp_path):
    done = subprocess.run(
        ["bash", str(INSTALL_SH), "--print-service", "--prefix", str(tmp_path / "a%b")],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 2
    assert "--prefix" in done.stderr and len(done.stderr.strip().splitlines()) == 1


def test_unknown_service_kind_is_a_usage_error(tmp_path):
    done = subprocess.run(
        ["bash", str(INSTALL_SH), "--print-service", "--service-kind", "upstart"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 2
    assert "--service-kind" in done.stderr
