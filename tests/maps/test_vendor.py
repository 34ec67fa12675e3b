"""MapLibre from an npm tarball: the real one from the wheelhouse (tests/run.sh puts it there with `npm pack`),
and broken or hostile ones built here, each refused with one line and without harming what was installed."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import pytest

from content.maps import vendor

from .maps_testing import wheelhouse_tarball


def fake_js(version: str) -> bytes:
    # The banner MapLibre's build puts first; vendor reads the version from it.
    return (
        f"/**\n * MapLibre GL JS\n * @license 3-Clause BSD. Full text of license: blob/v{version}/LICENSE.txt\n"
        f" */\nvar maplibregl = {{}};\n"
    ).encode()


def make_tarball(
    path: Path,
    name: str = "maplibre-gl",
    version: str = "5.20.0",
    js_version: str | None = None,
    extra: dict[str, bytes] | None = None,
    link_js: bool = False,
) -> Path:
    """An npm-pack-shaped tarball: package/package.json, package/dist/maplibre-gl.{js,css}, package/LICENSE.txt."""
    files = {
        "package/package.json": json.dumps({"name": name, "version": version}).encode(),
        "package/LICENSE.txt": b"BSD-3-Clause, the test's own text\n",
        "package/dist/maplibre-gl.css": b".maplibregl-map{overflow:hidden}\n",
        "package/dist/maplibre-gl.js": fake_js(js_version or version),
        **(extra or {}),
    }
    with tarfile.open(path, "w:gz") as tar:
        for member, body in files.items():
            info = tarfile.TarInfo(member)
            if link_js and member.endswith("maplibre-gl.js"):
                info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
                tar.addfile(info)
                continue
            info.size = len(body)
            tar.addfile(info, io.BytesIO(body))
    return path


def package_files(maps_dir: Path) -> set[str]:
    pkg = vendor.package_dir(maps_dir)
    return {str(p.relative_to(pkg)) for p in pkg.rglob("*") if p.is_file()}


def test_the_real_tarball_unpacks_to_where_npm_would_put_it(tmp_path):
    tarball = wheelhouse_tarball()
    if tarball is None:
        pytest.skip(
            "no maplibre-gl-*.tgz in $ALMANAC_WHEELHOUSE (tests/run.sh adds one with `npm pack` when npm is present)"
        )
    maps = tmp_path / "maps"
    lib, unpacked = vendor.install_tarball(maps, tarball)
    assert unpacked and lib.origin == "tarball" and lib.local_glyphs, lib
    assert lib.js == vendor.package_dir(maps) / "dist" / "maplibre-gl.js"
    assert package_files(maps) == {
        "package.json",
        "LICENSE.txt",
        "dist/maplibre-gl.js",
        "dist/maplibre-gl.css",
        vendor.TARBALL_MARK,
    }
    with tarfile.open(tarball) as tar:
        assert lib.js.read_bytes() == tar.extractfile("package/dist/maplibre-gl.js").read()
        assert lib.css.read_bytes() == tar.extractfile("package/dist/maplibre-gl.css").read()
        meta = json.load(tar.extractfile("package/package.json"))
    assert lib.version_text == meta["version"]
    found = vendor.find(maps)
    assert (found.origin, found.version, found.js) == ("tarball", lib.version, lib.js)
    # Nothing left beside the package folder (no temporary folders from the swap).
    assert [p.name for p in vendor.package_dir(maps).parent.iterdir()] == ["maplibre-gl"]
    # Run again (an installer re-run): nothing changes.
    before = lib.js.stat().st_mtime_ns
    again, unpacked = vendor.install_tarball(maps, tarball)
    assert not unpacked and again.version == lib.version and lib.js.stat().st_mtime_ns == before


def test_a_newer_tarball_replaces_an_older_one_and_an_older_one_is_kept_out(tmp_path):
    maps = tmp_path / "maps"
    vendor.install_tarball(maps, make_tarball(tmp_path / "maplibre-gl-5.12.0.tgz", version="5.12.0"))
    lib, unpacked = vendor.install_tarball(maps, make_tarball(tmp_path / "maplibre-gl-5.20.1.tgz", version="5.20.1"))
    assert unpacked and lib.version == (5, 20, 1)
    lib, unpacked = vendor.install_tarball(maps, tmp_path / "maplibre-gl-5.12.0.tgz")
    assert not unpacked and vendor.find(maps).version == (5, 20, 1)
    assert [p.name for p in vendor.package_dir(maps).parent.iterdir()] == ["maplibre-gl"]


def test_newest_tarball_of_a_folder(tmp_path):
    assert vendor.newest_tarball(tmp_path) is None
    for v in ("5.9.0", "5.11.0", "5.24.1", "5.100.0-pre.1"):
        (tmp_path / f"maplibre-gl-{v}.tgz").write_bytes(b"")
    (tmp_path / "maplibre-0.3.6-py3-none-any.whl").write_bytes(b"")
    assert vendor.newest_tarball(tmp_path).name == "maplibre-gl-5.24.1.tgz"  # 24 > 11 as numbers, not text


@pytest.mark.parametrize(
    "case,expected",
    [
        ("wrong package", "the package is 'leaflet', not maplibre-gl"),
        ("old version", "maplibre-gl 5.3.0 is too old; labels need >= 5.11.0"),
        ("path traversal", "refused, it holds a file outside its package folder ('package/../../../escaped.js')"),
        ("absolute path", "refused, it holds a file outside its package folder ('/tmp/escaped.js')"),
        ("symlink", "refused, package/dist/maplibre-gl.js is a link or folder, not a file"),
        ("js disagrees", "its package.json says 5.20.0 but maplibre-gl.js says 5.3.0"),
        ("truncated", "not a readable npm tarball"),
        ("not gzip", "not a readable npm tarball"),
        ("missing", "no such file"),
    ],
)
def test_a_bad_tarball_is_refused_in_one_line_and_nothing_is_lost(tmp_path, case, expected):
    maps = tmp_path / "data" / "maps"
    good, _ = vendor.install_tarball(maps, make_tarball(tmp_path / "good.tgz", version="5.12.0"))
    before = {p: (vendor.package_dir(maps) / p).read_bytes() for p in package_files(maps)}
    bad = tmp_path / "maplibre-gl-9.9.9.tgz"
    if case == "wrong package":
        make_tarball(bad, name="leaflet", version="9.9.9")
    elif case == "old version":
        make_tarball(bad, version="5.3.0")
    elif case == "path traversal":
        make_tarball(bad, version="9.9.9", extra={"package/../../../escaped.js": b"alert(1)"})
    elif case == "absolute path":
        make_tarball(bad, version="9.9.9", extra={"/tmp/escaped.js": b"alert(1)"})
    elif case == "symlink":
        make_tarball(bad, version="9.9.9", link_js=True)
    elif case == "js disagrees":
        make_tarball(bad, version="5.20.0", js_version="5.3.0")
    elif case == "truncated":
        whole = make_tarball(
            tmp_path / "whole.tgz", version="9.9.9", extra={"package/dist/big.bin": bytes(range(256)) * 4000}
        ).read_bytes()
        bad.write_bytes(whole[: len(whole) // 2])
    elif case == "not gzip":
        bad.write_text("<html>a proxy's error page</html>")
    with pytest.raises(vendor.VendorError) as err:
        vendor.install_tarball(maps, bad)
    message = str(err.value)
    assert "\n" not in message and message.startswith(str(bad)) and expected in message, message
    # What was installed is untouched, nothing escaped, and no temporary folder is left.
    assert {p: (vendor.package_dir(maps) / p).read_bytes() for p in package_files(maps)} == before
    assert not list(tmp_path.rglob("escaped.js")) and not Path("/tmp/escaped.js").exists()
    assert [p.name for p in vendor.package_dir(maps).parent.iterdir()] == ["maplibre-gl"]
    assert good.local_glyphs


def test_a_refused_tarball_on_an_empty_data_dir_leaves_the_pypi_copy_in_use(tmp_path):
    maps = tmp_path / "maps"
    with pytest.raises(vendor.VendorError):
        vendor.install_tarball(maps, make_tarball(tmp_path / "old.tgz", version="5.3.0"))
    assert not vendor.package_dir(maps).exists()
    lib = vendor.find(maps)
    assert lib is not None and lib.origin == "pypi"
