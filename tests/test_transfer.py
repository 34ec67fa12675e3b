"""Export the library to a folder with SHA256SUMS, import it into another box, and what import refuses."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from almanac_testing import MAPS, zim
from content.transfer import export_library, import_folder
from content.transfer.exporter import ExportError
from fill_testing import build_book, make_box, sha256


def box(path: Path):
    library, provenance, downloader = make_box(path)
    downloader.close()
    return library, provenance


def run_import(folder, library, provenance, data: Path, **kw):
    return import_folder(folder, library, provenance, maps_dir=data / "maps", models_dir=data / "models", **kw)


def test_export_then_import_round_trips(tmp_path):
    library, provenance = box(tmp_path / "a")
    for name in ("example", "small_nons"):
        library.add(shutil.copy(zim(name), library.archives_dir / f"{name}.zim"))
    drive = tmp_path / "drive"
    drive.mkdir()
    report = export_library(drive, library)
    assert sorted(e["name"] for e in report.exported) == ["example", "small_nons"]
    sums = dict(line.split("  ")[::-1] for line in (drive / "SHA256SUMS").read_text().splitlines())
    assert sums == {"example.zim": sha256(zim("example")), "small_nons.zim": sha256(zim("small_nons"))}
    assert sorted(export_library(drive, library).unchanged) == [
        "example",
        "small_nons",
    ]  # a second export copies nothing

    other, other_prov = box(tmp_path / "b")
    got = run_import(drive, other, other_prov, tmp_path / "b")
    assert sorted(i["name"] for i in got.imported) == ["example", "small_nons"] and not got.refused
    for name in ("example", "small_nons"):
        assert sha256(Path(other.get(name).path)) == sha256(zim(name))
    again = run_import(drive, other, other_prov, tmp_path / "b")
    assert not again.imported and sorted(s["reason"] for s in again.skipped) == [
        "already installed as example",
        "already installed as small_nons",
    ]
    assert json.dumps(again.to_json())


def test_import_refuses_bad_files_and_says_why(tmp_path):
    library, provenance = box(tmp_path / "box")
    drive = tmp_path / "drive"
    (drive / "sub").mkdir(parents=True)
    (drive / "notes.zim").write_text("not a zim at all")
    truncated = drive / "sub" / "cut.zim"
    truncated.write_bytes(zim("example").read_bytes()[:100_000])
    shutil.copy(zim("small_nons"), drive / "listed.zim")
    (drive / "SHA256SUMS").write_text("0" * 64 + "  listed.zim\n")
    (drive / "model-x").mkdir()
    (drive / "model-x" / "manifest.json").write_text("{}")
    report = run_import(drive, library, provenance, tmp_path / "box")
    reasons = {Path(r["source"]).name: r["reason"] for r in report.refused}
    assert reasons["notes.zim"].startswith("not a usable ZIM")
    assert "not a usable ZIM" in reasons["cut.zim"]
    assert reasons["listed.zim"].startswith("checksum mismatch against SHA256SUMS")
    assert "never imported unchecked" in reasons["model-x"]
    assert not report.imported and library.list() == []
    assert sorted(p.name for p in library.archives_dir.iterdir() if not p.name.startswith(".")) == []
    assert not any((library.archives_dir / ".partial").iterdir())
    assert (drive / "notes.zim").read_text() == "not a zim at all"  # the source is never written


def test_import_without_a_checksum_list_runs_libzims_check(tmp_path):
    library, provenance = box(tmp_path / "box")
    drive = tmp_path / "drive"
    drive.mkdir()
    good = build_book(tmp_path / "books", name="fine", date="2024-02-02", words=3000)
    shutil.copy(good, drive / "fine.zim")
    data = bytearray(good.read_bytes())
    data[len(data) // 2] ^= 0xFF  # damage inside the archive: only the full check sees it
    (drive / "damaged.zim").write_bytes(bytes(data))
    report = run_import(drive, library, provenance, tmp_path / "box")
    assert [i["name"] for i in report.imported] == ["fine"]
    [refused] = report.refused
    assert Path(refused["source"]).name == "damaged.zim" and "integrity check failed" in refused["reason"]


def test_a_newer_release_on_the_drive_updates_in_place_and_an_older_is_skipped(tmp_path):
    library, provenance = box(tmp_path / "box")
    old = build_book(tmp_path / "books", name="tiny_en_all", flavour="nopic", date="2024-01-05")
    new = build_book(tmp_path / "books", name="tiny_en_all", flavour="nopic", date="2024-06-01")
    library.add(shutil.copy(old, library.archives_dir / "tiny_en_all_nopic.zim"))
    drive = tmp_path / "drive"
    drive.mkdir()
    shutil.copy(new, drive / "tiny_en_all_nopic.zim")
    report = run_import(drive, library, provenance, tmp_path / "box")
    assert [i["name"] for i in report.imported] == ["tiny_en_all_nopic"]
    assert library.get("tiny_en_all_nopic").date == "2024-06-01"
    shutil.copy(old, drive / "tiny_en_all_nopic.zim")
    report = run_import(drive, library, provenance, tmp_path / "box")
    assert "as new or newer" in report.skipped[0]["reason"]
    other = build_book(tmp_path / "books", name="something_else", date="2024-01-01", filename="tiny_en_all_nopic")
    shutil.copy(other, drive / "tiny_en_all_nopic.zim")
    report = run_import(drive, library, provenance, tmp_path / "box")
    assert report.refused[0]["reason"] == "a different book named 'tiny_en_all_nopic' is installed"
    assert sha256(Path(library.get("tiny_en_all_nopic").path)) == sha256(new)


def test_maps_and_models_import_with_their_own_checks(tmp_path):
    library, provenance = box(tmp_path / "box")
    drive = tmp_path / "drive"
    drive.mkdir()
    pmtiles = sorted(MAPS.glob("*.pmtiles"))
    if not pmtiles:
        pytest.skip(f"no .pmtiles in {MAPS}")
    shutil.copy(pmtiles[0], drive / pmtiles[0].name)
    (drive / "broken.pmtiles").write_bytes(b"PMTiles" + b"\0" * 200)
    model = drive / "tiny-model"
    model.mkdir()
    (model / "manifest.json").write_text('{"format": "test"}')
    (model / "weights.bin").write_bytes(b"w" * 1000)
    checked = []

    def model_check(folder):
        checked.append(folder)
        return [] if (folder / "weights.bin").stat().st_size == 1000 else ["weights.bin: truncated"]

    report = run_import(drive, library, provenance, tmp_path / "box", model_check=model_check)
    imported = {(i["kind"], i["name"]) for i in report.imported}
    assert imported == {("map", pmtiles[0].name), ("model", "tiny-model")}
    assert sha256(tmp_path / "box" / "maps" / pmtiles[0].name) == sha256(pmtiles[0])
    assert (tmp_path / "box" / "models" / "tiny-model" / "weights.bin").stat().st_size == 1000
    assert checked and checked[0].name == "import-tiny-model"  # checked as copied, before it was moved in
    [refused] = report.refused
    assert Path(refused["source"]).name == "broken.pmtiles" and "not a usable map archive" in refused["reason"]
    assert not (tmp_path / "box" / "maps" / "broken.pmtiles").exists()


def test_export_errors(tmp_path):
    library, _ = box(tmp_path / "box")
    with pytest.raises(ExportError, match="no such folder"):
        export_library(tmp_path / "nowhere", library)
    (tmp_path / "drive").mkdir()
    with pytest.raises(ExportError, match="no book named 'x'"):
        export_library(tmp_path / "drive", library, names=["x"])
