"""Configuration: documented defaults, overrides, and one-line errors with exit code 2 for bad files."""

from __future__ import annotations

import yaml
import pytest

from appliance.config import ConfigError, DEFAULTS_FILE, load_config, set_value

from almanac_testing import almanac


def test_every_default_is_documented_with_a_comment():
    lines = DEFAULTS_FILE.read_text().splitlines()
    keys = [
        i
        for i, ln in enumerate(lines)
        if ln.strip() and not ln.lstrip().startswith("#") and ":" in ln and not ln.rstrip().endswith(":")
    ]
    assert len(keys) >= 7
    for i in keys:
        assert lines[i - 1].lstrip().startswith("#"), f"undocumented default: {lines[i]!r}"


def test_defaults_and_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("server:\n  port: 9090\nportal:\n  title: Village Library\n")
    cfg = load_config(path, env={"ALMANAC_DATA": str(tmp_path / "d")})
    assert cfg.get("server.port") == 9090
    assert cfg.get("server.host") == "0.0.0.0"  # untouched default
    assert cfg.get("portal.title") == "Village Library"
    assert cfg.data_dir == tmp_path / "d"
    assert cfg.data_dir_source == "ALMANAC_DATA"


def test_data_dir_from_file_expands_home(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    path = tmp_path / "c.yaml"
    path.write_text("data_dir: ~/stuff\n")
    cfg = load_config(path, env={})
    assert cfg.data_dir == tmp_path / "stuff"
    assert cfg.data_dir_source == str(path)


@pytest.mark.parametrize(
    "text, key, words",
    [
        ("server:\n  port: 70000\n", "server.port", "out of range"),
        ("server:\n  port: 0\n", "server.port", "out of range"),
        ("server:\n  port: eighty\n", "server.port", "whole number"),
        ("server:\n  prot: 8080\n", "server.prot", "unknown key"),
        ("colour: blue\n", "colour", "unknown key"),
        ("server: 8080\n", "server", "mapping"),
        ("log_level: loud\n", "log_level", "not one of"),
        ("server:\n  workers: 0\n", "server.workers", "out of range"),
    ],
)
def test_bad_values_name_file_and_key(tmp_path, text, key, words):
    path = tmp_path / "config.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_config(path, env={})
    assert err.value.key == key
    assert str(path) in str(err.value) and words in str(err.value)


BAD_FILES = {
    "invalid_yaml": ("server:\n  port: [8080\n", "invalid YAML at line"),
    "unknown_key": ("server:\n  prot: 8080\n", "server.prot: unknown key"),
    "port_range": ("server:\n  port: 99999\n", "server.port: 99999 is out of range"),
    "not_mapping": ("- a\n- b\n", "must be a YAML mapping"),
}


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_cli_bad_config_is_one_line_and_exit_2(tmp_path, case):
    text, expected = BAD_FILES[case]
    path = tmp_path / "config.yaml"
    path.write_text(text)
    for command in (["status"], ["config", "show"], ["doctor"], ["serve", "--port", "1"]):
        done = almanac(*command, env={"ALMANAC_CONFIG": str(path), "ALMANAC_DATA": str(tmp_path / "d")})
        assert done.returncode == 2, (command, done.stdout, done.stderr)
        err = done.stderr.strip()
        assert "Traceback" not in done.stderr
        assert len(err.splitlines()) == 1, err
        assert str(path) in err and expected in err, err


def test_cli_unwritable_data_dir_exit_2(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    path = tmp_path / "config.yaml"
    path.write_text(f"data_dir: {blocker}/data\n")
    done = almanac("status", env={"ALMANAC_CONFIG": str(path), "ALMANAC_DATA": ""})
    assert done.returncode == 2
    line = done.stderr.strip()
    assert len(line.splitlines()) == 1 and "Traceback" not in done.stderr
    assert f"{path}: data_dir:" in line and "not a writable directory" in line


def test_cli_missing_config_file_exit_2(tmp_path):
    done = almanac("config", "show", env={"ALMANAC_CONFIG": str(tmp_path / "nope.yaml")})
    assert done.returncode == 2 and "nope.yaml: file not found" in done.stderr


def test_config_show_prints_effective_values(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text("server:\n  port: 8181\n")
    done = almanac("config", "show", env={"ALMANAC_CONFIG": str(path), "ALMANAC_DATA": str(tmp_path / "d")})
    assert done.returncode == 0, done.stderr
    shown = yaml.safe_load(done.stdout)
    assert shown["server"]["port"] == 8181 and shown["server"]["workers"] == 2
    assert shown["data_dir"] == str(tmp_path / "d")


def test_config_set_validates_and_keeps_file_on_error(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text("portal:\n  title: Mine\n")
    set_value(path, "server.port", 8282)
    data = yaml.safe_load(path.read_text())
    assert data == {"portal": {"title": "Mine"}, "server": {"port": 8282}}
    before = path.read_text()
    with pytest.raises(ConfigError):
        set_value(path, "server.port", 123456)
    with pytest.raises(ConfigError):
        set_value(path, "server.nonsense", 1)
    assert path.read_text() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.yaml"]  # no temp files left behind


def test_cli_config_set(tmp_path):
    path = tmp_path / "config.yaml"
    done = almanac("config", "set", "server.port", "8383", env={"ALMANAC_CONFIG": str(path)})
    assert done.returncode == 0, done.stderr
    assert yaml.safe_load(path.read_text())["server"]["port"] == 8383
    done = almanac("config", "set", "server.port", "0", env={"ALMANAC_CONFIG": str(path)})
    assert done.returncode == 2 and "server.port: 0 is out of range" in done.stderr


def test_config_set_writes_where_the_loader_reads_under_xdg_config_home(tmp_path, monkeypatch):
    """With no ALMANAC_CONFIG and no file yet, `config set` creates $XDG_CONFIG_HOME/almanac/config.yaml,
    the first place the loader looks, so the next command sees the change."""
    from click.testing import CliRunner

    from appliance import config as config_module
    from appliance.cli import cli

    monkeypatch.delenv("ALMANAC_CONFIG", raising=False)
    monkeypatch.setenv("ALMANAC_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    monkeypatch.setattr(config_module, "is_root", lambda: False)  # the tests may run as root
    done = CliRunner().invoke(cli, ["config", "set", "portal.title", "Shelf"])
    assert done.exit_code == 0, done.output
    written = tmp_path / "xdg" / "almanac" / "config.yaml"
    assert done.output.startswith(f"{written}: portal.title = Shelf")
    assert not (tmp_path / "home" / ".config").exists()
    assert load_config().get("portal.title") == "Shelf"
    shown = CliRunner().invoke(cli, ["config", "show"])
    assert f"# from: {written}" in shown.output and "title: Shelf" in shown.output
