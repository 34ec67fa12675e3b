"""The downloader against a real file server process with injected faults: every case ends with the
right file in the library (SHA-256 equal to the source) or a clear error, never a partial or unverified
file in the library."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from almanac_testing import MAPS, ROOT, zim
from fill_testing import FaultServer, build_book, make_box, publish, sha256, wait_for

BIG = "wikibooks_be_all_nopic_2017-02"  # 466 KB: big enough for drops and a slow server


@pytest.fixture
def files(tmp_path):
    server = FaultServer(tmp_path / "files", tmp_path).start()
    yield server
    server.stop()


@pytest.fixture
def box(tmp_path):
    library, provenance, downloader = make_box(tmp_path / "data")
    yield library, provenance, downloader
    downloader.close()
    library.close()


def library_files(library) -> list[str]:
    """What is in the archives folder, hidden staging folder aside."""
    return sorted(p.name for p in library.archives_dir.iterdir() if not p.name.startswith("."))


def no_partials(library) -> bool:
    staging = library.archives_dir / ".partial"
    return not staging.exists() or not any(staging.iterdir())


def test_meta4_download_installs_a_verified_book(files, box, tmp_path):
    library, provenance, downloader = box
    url = publish(zim(BIG), files.root, files.url)
    job = downloader.add(url, kind="zim", name="wikibooks_be")
    [done] = downloader.run()
    assert done.state == "done", done.error
    assert done.result == str(library.archives_dir.absolute() / "wikibooks_be.zim")
    assert sha256(Path(done.result)) == sha256(zim(BIG)) == done.sha256
    assert library.get("wikibooks_be").article_count == 66
    record = provenance.get("zim", "wikibooks_be")
    assert record.sha256 == done.sha256 and record.url == url
    assert no_partials(library)
    assert job.to_json()["state"] == "queued" and done.to_json()["fraction"] == 1.0


def test_dropped_connections_resume_without_refetching(files, box):
    library, _, downloader = box
    url = publish(zim(BIG), files.root, files.url)
    files.faults({f"/{BIG}.zim": {"drop_after": 100_000}})
    [done] = downloader.run() if downloader.add(url, kind="zim", name="be") else []
    assert done.state == "done", done.error
    assert sha256(Path(done.result)) == sha256(zim(BIG))
    served = files.requests(f"/{BIG}.zim")
    assert [r["start"] for r in served] == [None, 100_000, 200_000, 300_000, 400_000]
    assert sum(r["sent"] for r in served) == zim(BIG).stat().st_size  # not one byte twice
    assert done.refetched == 0


def test_a_drop_after_progress_reconnects_at_once_with_no_backoff(files, tmp_path):
    library, _, downloader = make_box(tmp_path / "slow-backoff", backoff_s=30.0, backoff_max_s=30.0)
    url = publish(zim(BIG), files.root, files.url)
    files.faults({f"/{BIG}.zim": {"drop_after": 100_000}})
    began = time.monotonic()
    downloader.add(url, kind="zim", name="be")
    [done] = downloader.run()
    assert done.state == "done" and done.error == "", done.error
    assert time.monotonic() - began < 20  # four drops, each followed at once by a reconnect (a backoff: 4 x 30 s)
    assert len(files.requests(f"/{BIG}.zim")) == 5 and sha256(Path(done.result)) == sha256(zim(BIG))
    downloader.close()
    library.close()


def test_wrong_checksum_is_deleted_and_reported_with_both_hashes(files, box):
    library, _, downloader = box
    library.add(shutil.copy(zim("small_nons"), library.archives_dir / "kept.zim"))
    url = publish(zim(BIG), files.root, files.url)
    files.faults({f"/{BIG}.zim": {"corrupt_at": 300_000}})
    downloader.add(url, kind="zim", name="be")
    [failed] = downloader.run()
    assert failed.state == "failed"
    good = sha256(zim(BIG))
    assert "checksum mismatch" in failed.error and good in failed.error
    bad = failed.error.split("got ")[1].split(";")[0]
    assert len(bad) == 64 and bad != good
    assert library_files(library) == ["kept.zim"] and no_partials(library)
    assert [b.name for b in library.list()] == ["kept"]


def test_first_mirror_404_then_the_next_mirror(files, box):
    library, _, downloader = box
    url = publish(zim(BIG), files.root, files.url, mirrors=(f"{files.url}/gone/{BIG}.zim",))
    downloader.add(url, kind="zim", name="be")
    [done] = downloader.run()
    assert done.state == "done", done.error
    assert [(r["path"], r["status"]) for r in files.requests() if r["path"].endswith(".zim")] == [
        (f"/gone/{BIG}.zim", 404),
        (f"/{BIG}.zim", 200),
    ]
    assert sha256(Path(done.result)) == sha256(zim(BIG))


def test_every_mirror_gone_is_a_clear_error(files, box):
    library, _, downloader = box
    publish(zim(BIG), files.root, files.url)
    (files.root / f"{BIG}.zim").unlink()
    downloader.add(f"{files.url}/{BIG}.zim.meta4", kind="zim", name="be")
    [failed] = downloader.run()
    assert failed.state == "failed" and "no mirror serves the file" in failed.error and "404" in failed.error
    assert library_files(library) == []


def test_416_on_resume_starts_the_file_again(files, box):
    library, _, downloader = box
    url = publish(zim(BIG), files.root, files.url)
    files.faults({f"/{BIG}.zim": {"drop_after": 150_000, "drops": 1, "range_416": 1}})
    downloader.add(url, kind="zim", name="be")
    [done] = downloader.run()
    assert done.state == "done", done.error
    assert [(r["start"], r["status"]) for r in files.requests(f"/{BIG}.zim")] == [
        (None, 200),
        (150_000, 416),
        (None, 200),
    ]
    assert done.refetched == 150_000
    assert sha256(Path(done.result)) == sha256(zim(BIG))


def test_a_server_that_ignores_range_gets_the_whole_file_again(files, box):
    library, _, downloader = box
    url = publish(zim(BIG), files.root, files.url)
    files.faults({f"/{BIG}.zim": {"drop_after": 200_000, "drops": 1, "ignore_range": 1}})
    downloader.add(url, kind="zim", name="be")
    [done] = downloader.run()
    assert done.state == "done", done.error
    assert sha256(Path(done.result)) == sha256(zim(BIG))
    assert done.refetched == 200_000


def test_server_restarted_mid_file(files, box):
    library, _, downloader = box
    url = publish(zim(BIG), files.root, files.url)
    files.faults({f"/{BIG}.zim": {"rate": 400_000}})
    downloader.add(url, kind="zim", name="be")
    result = {}
    runner = threading.Thread(target=lambda: result.update(jobs=downloader.run()))
    runner.start()
    wait_for(lambda: downloader.jobs()[0].bytes_done > 100_000, what="a first part")
    files.stop()  # killed mid-file: the client sees a reset, then refused connections
    time.sleep(0.3)
    files.faults({})
    files.start()  # same port
    runner.join(30)
    [done] = result["jobs"]
    assert done.state == "done", done.error
    assert sha256(Path(done.result)) == sha256(zim(BIG))
    starts = [r["start"] for r in files.requests(f"/{BIG}.zim") if r["start"]]
    assert starts and starts[-1] > 100_000  # resumed, not restarted


def test_very_slow_server_still_completes_and_reports_rate_and_eta(files, tmp_path):
    seen = []
    library, _, downloader = make_box(tmp_path / "data", on_progress=lambda j: seen.append(j.to_json()))
    url = publish(zim("small_withns"), files.root, files.url)
    files.faults({"/small_withns.zim": {"rate": 40_000}})  # 79 KB at 40 KB/s
    downloader.add(url, kind="zim", name="slow")
    [done] = downloader.run()
    assert done.state == "done", done.error
    running = [s for s in seen if s["state"] == "running" and s["bytes_done"]]
    assert running, "no progress reported while downloading"
    assert any(10_000 < s["rate"] < 200_000 and s["eta_s"] is not None for s in running)
    assert sorted(s["bytes_done"] for s in running) == [s["bytes_done"] for s in running]
    assert sha256(Path(done.result)) == sha256(zim("small_withns"))


def test_a_stalled_server_ends_in_a_clear_error(files, tmp_path):
    library, _, downloader = make_box(tmp_path / "data", timeout_s=0.4, retries=2)
    url = publish(zim(BIG), files.root, files.url)
    files.faults({f"/{BIG}.zim": {"stall_after": 50_000}})
    downloader.add(url, kind="zim", name="be")
    [failed] = downloader.run()
    assert failed.state == "failed"
    assert "gave up after 3 attempts" in failed.error and "timeout" in failed.error
    assert library_files(library) == []
    # the bytes that came are kept: fixing the server and resuming goes on from there
    files.faults({})
    downloader.resume(failed.id)
    [done] = downloader.run()
    assert done.state == "done" and sha256(Path(done.result)) == sha256(zim(BIG))
    assert files.requests(f"/{BIG}.zim")[-1]["start"] == 50_000


def test_sha256_sidecar_where_there_is_no_metalink(files, box):
    library, _, downloader = box
    url = publish(zim("small_nons"), files.root, files.url, sidecar=True)
    downloader.add(url, kind="zim", name="nons")
    [done] = downloader.run()
    assert done.state == "done" and done.sha256 == sha256(zim("small_nons"))
    (files.root / "small_nons.zim.sha256").write_text("0" * 64 + "  small_nons.zim\n")
    library.remove("nons")
    os.unlink(done.result)
    downloader.add(url, kind="zim", name="nons")
    [failed] = downloader.run()
    assert failed.state == "failed" and "checksum mismatch" in failed.error and "0" * 64 in failed.error
    assert library_files(library) == []


def test_a_file_that_is_not_a_zim_is_refused_even_with_a_good_checksum(files, box):
    library, _, downloader = box
    fake = files.root / "fake.zim"
    files.root.mkdir(parents=True, exist_ok=True)
    fake.write_bytes(b"ZIM\x04" + os.urandom(5000))
    (files.root / "fake.zim.sha256").write_text(sha256(fake) + "\n")
    downloader.add(f"{files.url}/fake.zim", kind="zim", name="fake")
    [failed] = downloader.run()
    assert failed.state == "failed" and failed.error.startswith("refused: not a usable ZIM")
    assert library_files(library) == [] and no_partials(library)


def test_pause_resume_cancel(files, box):
    library, _, downloader = box
    url = publish(zim(BIG), files.root, files.url)
    files.faults({f"/{BIG}.zim": {"rate": 300_000}})
    job = downloader.add(url, kind="zim", name="be")
    runner = threading.Thread(target=downloader.run)
    runner.start()
    wait_for(lambda: downloader.job(job.id).bytes_done > 50_000, what="progress")
    downloader.pause(job.id)
    runner.join(10)
    paused = downloader.job(job.id)
    assert paused.state == "paused" and 0 < paused.checkpoint < zim(BIG).stat().st_size
    assert library_files(library) == []
    files.faults({})
    downloader.resume(job.id)
    [done] = downloader.run()
    assert done.state == "done" and sha256(Path(done.result)) == sha256(zim(BIG))
    # went on from the pause: the server logs an answer when it ends, and the paused answer ends when the
    # server's next write meets the closed socket, which may come after the resumed one has finished
    wait_for(lambda: len(files.requests(f"/{BIG}.zim")) >= 2, what="both answers logged")
    assert sorted(r["start"] or 0 for r in files.requests(f"/{BIG}.zim")) == [0, paused.checkpoint]

    files.faults({f"/{BIG}.zim": {"rate": 300_000}})
    other = downloader.add(url, kind="zim", name="be2")
    runner = threading.Thread(target=downloader.run)
    runner.start()
    wait_for(lambda: downloader.job(other.id).bytes_done > 50_000, what="progress")
    downloader.cancel(other.id)
    runner.join(10)
    assert downloader.job(other.id).state == "cancelled"
    assert library_files(library) == ["be.zim"] and no_partials(library)
    with pytest.raises(Exception, match="only a paused or failed job can be resumed"):
        downloader.resume(done.id)


def test_bounded_concurrency(files, tmp_path):
    library, _, downloader = make_box(tmp_path / "data", max_parallel=2)
    names = []
    for i in range(3):
        book = build_book(tmp_path / "books", name=f"book{i}", date="2024-01-01")
        publish(book, files.root, files.url)
        names.append(book.name)
    files.faults({f"/{n}": {"rate": 100_000} for n in names})
    for i, n in enumerate(names):
        downloader.add(f"{files.url}/{n}.meta4", kind="zim", name=f"book{i}")
    most = []
    stop = threading.Event()

    def watch():
        while not stop.is_set():
            most.append(sum(1 for j in downloader.jobs() if j.state == "running"))
            time.sleep(0.02)

    watcher = threading.Thread(target=watch)
    watcher.start()
    ran = downloader.run()
    stop.set()
    watcher.join()
    assert [j.state for j in ran] == ["done"] * 3
    assert max(most) == 2
    assert library_files(library) == ["book0.zim", "book1.zim", "book2.zim"]


def test_disk_space_checked_before_and_during(files, tmp_path):
    size = zim(BIG).stat().st_size
    library, _, downloader = make_box(tmp_path / "data", free_space=lambda path: 100_000)
    url = publish(zim(BIG), files.root, files.url)
    job = downloader.add(url, kind="zim", name="be")
    downloader.run()
    paused = downloader.job(job.id)
    assert paused.state == "paused" and "not enough disk space" in paused.error and "short" in paused.error
    assert paused.bytes_done == 0

    free = {"calls": 0}

    def shrinking(path):
        free["calls"] += 1
        return 10**9 if free["calls"] == 1 else 1000  # fine at the start, full after the first chunk

    _, _, during = make_box(tmp_path / "data2", free_space=shrinking)
    job2 = during.add(url, kind="zim", name="be")
    during.run()
    stopped = during.job(job2.id)
    assert stopped.state == "paused" and "not enough disk space" in stopped.error
    assert 0 < stopped.checkpoint < size
    during.free_space = lambda path: 10**9
    during.resume(job2.id)
    [done] = during.run()
    assert done.state == "done" and sha256(Path(done.result)) == sha256(zim(BIG))


def test_killed_mid_download_resumes_from_sqlite(files, tmp_path):
    data = tmp_path / "data"
    library, _, downloader = make_box(data)
    url = publish(zim(BIG), files.root, files.url)
    files.faults({f"/{BIG}.zim": {"rate": 250_000}})
    job = downloader.add(url, kind="zim", name="be")
    downloader.close()
    runner = [sys.executable, str(ROOT / "tests" / "fill_testing.py"), str(data)]
    first = subprocess.Popen(runner, cwd=ROOT, stdout=subprocess.PIPE)
    store = make_box(data)[2].store
    wait_for(lambda: store.get(job.id).checkpoint >= 128 * 1024, what="a checkpoint")
    os.kill(first.pid, signal.SIGKILL)
    first.wait(10)
    killed = store.get(job.id)
    assert killed.state == "running"  # as the dead process left it
    assert library_files(library) == []  # nothing half-made in the library
    files.faults({})
    second = subprocess.run(runner, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert second.returncode == 0, second.stderr
    done = store.get(job.id)
    assert done.state == "done", done.error
    assert sha256(Path(done.result)) == sha256(zim(BIG))
    resumed_at = max(r["start"] or 0 for r in files.requests(f"/{BIG}.zim"))
    assert resumed_at >= killed.checkpoint  # from the last checkpoint, not from zero
    assert done.refetched < 64 * 1024  # less than one chunk fetched twice
    assert library.get("be") is not None


def test_bad_requests_are_refused_at_once(box):
    _, _, downloader = box
    with pytest.raises(Exception, match="not an http"):
        downloader.add("ftp://x/y.zim", kind="zim", name="y")
    with pytest.raises(Exception, match="unknown kind"):
        downloader.add("http://x/y.zim", kind="movie", name="y")
    with pytest.raises(Exception, match="not 64 hex digits"):
        downloader.add("http://x/y.zim", kind="zim", name="y", sha256="abc")
    with pytest.raises(Exception, match="not a usable file name"):
        downloader.add("http://x/y.zim", kind="zim", name="../y")
    downloader.add("http://127.0.0.1:9/y.zim", kind="zim", name="y")
    with pytest.raises(Exception, match="already being downloaded"):
        downloader.add("http://127.0.0.1:9/y.zim", kind="zim", name="y")
    assert len(downloader.jobs()) == 1


def test_no_published_checksum_falls_back_to_libzims_own(files, box, tmp_path):
    library, _, downloader = box
    good = build_book(tmp_path / "books", name="plain", date="2024-02-02", words=3000)
    files.root.mkdir(parents=True, exist_ok=True)
    shutil.copy(good, files.root / "plain.zim")
    data = bytearray(good.read_bytes())
    data[len(data) // 2] ^= 0xFF
    (files.root / "damaged.zim").write_bytes(bytes(data))
    downloader.add(f"{files.url}/plain.zim", kind="zim", name="plain")
    downloader.add(f"{files.url}/damaged.zim", kind="zim", name="damaged")
    done, refused = downloader.run()
    assert done.state == "done" and sha256(Path(done.result)) == sha256(good)
    assert refused.state == "failed" and "no published checksum, and libzim's own check failed" in refused.error
    assert library_files(library) == ["plain.zim"] and no_partials(library)
    # a map or model has no checksum inside: without a published one it is refused
    shutil.copy(MAPS / "world-ne110m-z0-4.pmtiles", files.root / "world.pmtiles")
    downloader.add(f"{files.url}/world.pmtiles", kind="map", name="world.pmtiles")
    [map_job] = downloader.run()
    assert map_job.state == "failed" and "no published checksum" in map_job.error
    (files.root / "world.pmtiles.sha256").write_text(sha256(files.root / "world.pmtiles"))
    downloader.add(f"{files.url}/world.pmtiles", kind="map", name="world.pmtiles")
    [map_job] = downloader.run()
    assert map_job.state == "done", map_job.error
    assert sha256(Path(map_job.result)) == sha256(MAPS / "world-ne110m-z0-4.pmtiles")


def test_tqdm_progress_draws_one_bar_per_job_and_closes_it(files, tmp_path):
    import io

    from content.downloads.progress import TqdmProgress

    out = io.StringIO()
    bars = TqdmProgress(file=out)
    library, _, downloader = make_box(tmp_path / "data", on_progress=bars)
    downloader.add(publish(zim("small_nons"), files.root, files.url), kind="zim", name="nons")
    [done] = downloader.run()
    bars.close()
    assert done.state == "done"
    text = out.getvalue()
    assert "nons" in text and "100%" in text and "40.2k" in text  # 41,155 bytes, in KiB
    assert bars._bars == {}
