"""The almanac CLI on a real data dir: status, doctor, urls, content commands."""

from __future__ import annotations

import json
import shutil

from appliance.cli import cli

from almanac_testing import almanac, free_port, zim


def test_version(runner):
    from appliance import __version__

    result = runner.invoke(cli, ["version"])
    assert result.exit_code == 0 and result.output.strip() == __version__


def test_content_add_list_info_remove(runner, data_dir):
    result = runner.invoke(cli, ["content", "add", str(zim("small_nons"))])
    assert result.exit_code == 0, result.output
    assert "added small_nons: Test ZIM file" in result.output
    listed = json.loads(runner.invoke(cli, ["content", "list", "--json"]).output)
    assert [b["name"] for b in listed] == ["small_nons"]
    assert listed[0]["main_path"] == "main.html" and listed[0]["illustration_48"] is True
    info = runner.invoke(cli, ["content", "info", "small_nons"]).output
    assert "language: en" in info and "has_fulltext_index: False" in info
    result = runner.invoke(cli, ["content", "remove", "small_nons"])
    assert result.exit_code == 0 and "file kept" in result.output
    assert zim("small_nons").exists()
    assert json.loads(runner.invoke(cli, ["content", "list", "--json"]).output) == []


def test_content_add_refuses_bad_files(runner, data_dir, tmp_path):
    fake = tmp_path / "fake.zim"
    fake.write_bytes(b"this is not a zim file at all" * 100)
    result = runner.invoke(cli, ["content", "add", str(fake)])
    assert result.exit_code == 1 and "fake.zim: not a ZIM file (bad magic number)" in result.output
    truncated = tmp_path / "truncated.zim"
    truncated.write_bytes(zim("example").read_bytes()[:5000])
    result = runner.invoke(cli, ["content", "add", str(truncated)])
    assert result.exit_code == 1 and result.output.startswith("Error: truncated.zim:")
    assert len(result.output.strip().splitlines()) == 1
    result = runner.invoke(cli, ["content", "add", str(tmp_path / "missing.zim")])
    assert result.exit_code == 1 and "no such file" in result.output


def test_dropped_files_are_picked_up_and_bad_ones_reported(runner, data_dir):
    runner.invoke(cli, ["status"])  # creates the layout
    shutil.copy(zim("corner_cases"), data_dir / "archives" / "corner_cases.zim")
    (data_dir / "archives" / "broken.zim").write_bytes(b"ZIM\x04" + b"\0" * 100)
    result = runner.invoke(cli, ["content", "list"])
    assert result.exit_code == 0
    assert "corner_cases\tZIM corner cases" in result.output
    assert "refused: broken.zim:" in result.output
    result = runner.invoke(cli, ["content", "remove", "corner_cases"])
    assert "deleted" in result.output and not (data_dir / "archives" / "corner_cases.zim").exists()


def test_content_check(runner, data_dir):
    runner.invoke(cli, ["content", "add", str(zim("small_withns"))])
    result = runner.invoke(cli, ["content", "check", "small_withns"])
    assert result.exit_code == 0 and result.output.startswith("OK small_withns")
    assert runner.invoke(cli, ["content", "check", "nope"]).exit_code == 1


def test_status_text_and_json(data_dir):
    port = free_port()  # nothing answers there, whatever else runs on this machine's 8080
    config = data_dir.parent / "config.yaml"
    config.write_text(f"server:\n  host: 127.0.0.1\n  port: {port}\n")
    almanac("content", "add", str(zim("example")))
    done = almanac("status")
    assert done.returncode == 0, done.stderr
    for label in ("config:", "data:", "books:    1", "- example: Wikibooks", "disk:", "service:", "urls:"):
        assert label in done.stdout
    report = json.loads(almanac("status", "--json").stdout)
    assert report["books"][0]["name"] == "example"
    assert report["data_dir"] == str(data_dir)
    assert report["answering"] is False
    assert report["urls"] == [f"http://127.0.0.1:{port}/"]  # the test config binds 127.0.0.1


def test_urls_for_all_interfaces(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("server:\n  port: 8099\n")
    done = almanac("urls", env={"ALMANAC_CONFIG": str(cfg), "ALMANAC_DATA": str(tmp_path / "d")})
    lines = done.stdout.split()
    assert done.returncode == 0 and lines
    assert all(u.startswith("http://") and u.endswith(":8099/") for u in lines)
    assert any(u.endswith(".local:8099/") for u in lines)


def test_doctor_reports_each_check(data_dir):
    done = almanac("doctor")
    names = ["python", "data dir", "disk", "library", "libzim", "mlx", "port", "assistant"]
    for name in names:
        assert any(
            line.split(" ", 1)[-1].strip().startswith(name + ":")
            for line in done.stdout.splitlines()
            if line.startswith(("OK", "FAIL"))
        ), (name, done.stdout)
    assert done.stdout.strip().splitlines()[-1].endswith("FAIL")
    assert done.returncode == (0 if " 0 FAIL" in done.stdout else 1)
    # On a CPU it says which BLAS and which decode kernels the assistant's engine runs on.
    mlx_line = next(line for line in done.stdout.splitlines() if " mlx:" in line)
    assert "CPU only" not in mlx_line or ("BLAS" in mlx_line and "decode kernels" in mlx_line), mlx_line


def test_doctor_fails_port_taken_by_another_program(data_dir, tmp_path):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        cfg = tmp_path / "busy.yaml"
        cfg.write_text(f"server:\n  host: 127.0.0.1\n  port: {port}\n")
        done = almanac("doctor", env={"ALMANAC_CONFIG": str(cfg)})
    assert done.returncode == 1
    assert f"FAIL port: cannot use 127.0.0.1:{port}" in done.stdout
    assert "fix: stop the program using port" in done.stdout


def test_unknown_command_is_usage_error():
    done = almanac("frobnicate")
    assert done.returncode == 2 and "No such command" in done.stderr and "Traceback" not in done.stderr
