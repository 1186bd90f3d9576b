"""The review page in a real browser (headless Chromium) against a real server on the sample run:
a species changed in the page changes the counts at once, is kept over a reload, and is in the
reviewed counts downloaded from the page."""

import csv
import io

import httpx
from builders import interruptible

from fishcam.serve.app import create_app


def counts_row(page, species: str) -> tuple[str, str] | None:
    row = page.locator(f'#counts tr[data-species="{species}"]')
    if row.count() == 0:
        return None
    return row.locator(".unique").inner_text(), row.locator(".maxn").inner_text()


def best_view_width(run, track_id: int) -> int:
    """The width of the first (best) view the run saved for the track (fishcam.sinks.views)."""
    import json

    import cv2

    first = json.loads((run / "views" / "index.json").read_text())["tracks"][str(track_id)]["views"][0]
    return cv2.imread(str(run / "views" / first["file"])).shape[1]


def test_a_species_changed_on_the_review_page_changes_the_counts_and_is_kept(runs_root, serve, page, tmp_path):
    width = best_view_width(runs_root / "dive_sample", 4)
    base = serve(create_app(runs_root))
    index = httpx.get(base + "/").text
    assert "dive_sample" in index and "0/6" in index  # 6 tracks, none reviewed yet
    page.goto(f"{base}/review/dive_sample")
    assert page.locator(".card").count() == 6
    assert page.locator("#reviewed").inner_text() == "0" and page.locator("#total").inner_text() == "6"
    assert counts_row(page, "Pterois volitans") == ("2", "2")  # two lionfish, together from frame 124
    assert counts_row(page, "Plectropomus leopardus") == ("1", "1")
    page.locator("#track-4 .views img").first.scroll_into_view_if_needed()  # views load lazily
    page.wait_for_function(f"() => document.querySelector('#track-4 .views img').naturalWidth === {width}")  # best
    page.wait_for_function(
        """() => document.querySelector('#counts tr[data-species="Pterois volitans"] img.thumb').naturalWidth === 640"""
    )  # the MaxN evidence frame: the whole 640x480 frame
    page.fill("#reviewer", "Ann Diver")
    page.dispatch_event("#reviewer", "change")
    # Track 4 (the coral trout, frames 71-199) called a lionfish: 3 lionfish, 3 at once from frame 124.
    card = page.locator("#track-4")
    card.locator("select[name=species]").select_option("Pterois volitans")
    card.locator("button[data-action=species]").click()
    page.wait_for_function(
        """() => { const r = document.querySelector('#counts tr[data-species="Pterois volitans"]');
                   return r && r.querySelector('.unique').textContent === '3'; }"""
    )
    assert counts_row(page, "Pterois volitans") == ("3", "3")
    assert counts_row(page, "Plectropomus leopardus") is None
    assert page.locator("#reviewed").inner_text() == "1"
    assert page.locator("#track-4").get_attribute("data-state") == "corrected"
    assert "Ann Diver" in page.locator("#track-4").inner_text()
    # Confirm another with the name kept in localStorage, then filter to what is left to review.
    page.locator("#track-0 button[data-action=confirm]").click()
    page.wait_for_function("() => document.querySelector('#reviewed').textContent === '2'")
    page.check("#unreviewed")
    assert page.locator(".card:not(.hidden)").count() == 4
    page.select_option("#sort", "queue")
    page.reload()
    assert page.locator("#reviewer").input_value() == "Ann Diver"
    assert counts_row(page, "Pterois volitans") == ("3", "3")
    # The run's MaxN frame of the lionfish shows two: no longer the evidence of a MaxN of three.
    assert page.locator('#counts tr[data-species="Pterois volitans"] img.thumb').count() == 0
    assert page.locator('#counts tr[data-species="Achoerodus viridis"] img.thumb').count() == 1
    assert page.locator("#reviewed").inner_text() == "2"
    assert page.locator("#track-4 .species").inner_text() == "Pterois volitans"
    assert page.locator(".card:not(.hidden)").count() == 4  # the filter is kept too
    with page.expect_download() as download:
        page.locator('a.download[href$="species_counts.csv"]').click()
    saved = tmp_path / "counts.csv"
    download.value.save_as(saved)
    rows = {r["species"]: r for r in csv.DictReader(io.StringIO(saved.read_text()))}
    assert (rows["Pterois volitans"]["unique_tracks"], rows["Pterois volitans"]["max_n"]) == ("3", "3")
    assert "Plectropomus leopardus" not in rows
    assert (runs_root / "dive_sample" / "reviewed" / "species_counts.csv").read_text() == saved.read_text()
    assert "1,1" in (runs_root / "dive_sample" / "species_counts.csv").read_text()  # the run's own: untouched
    assert "2/6" in httpx.get(base + "/").text


def test_a_correction_that_does_not_fit_is_one_line_and_changes_nothing(runs_root, serve):
    base = serve(create_app(runs_root))
    answer = httpx.post(f"{base}/api/correct/dive_sample", json={"action": "merge", "track": 1, "into": 99,
                                                                  "reviewer": "ann"})  # fmt: skip
    assert answer.status_code == 422 and "99" in answer.text and "\n" not in answer.text.strip()
    assert httpx.post(f"{base}/api/correct/dive_sample", json={"action": "confirm", "track": 1}).status_code == 422
    answer = httpx.post(f"{base}/api/correct/dive_sample", json={"action": "merge", "track": 5, "into": 1,
                                                                  "reviewer": "ann"})  # fmt: skip
    assert answer.status_code == 200
    state = answer.json()
    assert state["total"] == 5 and "5" not in state["cards"] and "#5 merged in" in state["cards"]["1"]
    answer = httpx.post(f"{base}/api/correct/dive_sample", json={"action": "split", "track": 2, "frame": 100,
                                                                  "reviewer": "ann"})  # fmt: skip
    assert answer.status_code == 200, answer.text
    state = answer.json()
    assert state["total"] == 6 and "split from #2 at frame 100" in state["cards"]["6"]


def test_a_damaged_review_file_is_named_on_the_page_and_the_index_still_lists_the_run(runs_root, serve):
    (runs_root / "dive_sample" / "review.jsonl").write_text('{"v": 1, "action": "dance"}\n')
    base = serve(create_app(runs_root))
    page = httpx.get(f"{base}/review/dive_sample")
    assert page.status_code == 409 and "review.jsonl, line 1" in page.text
    index = httpx.get(base + "/")
    assert index.status_code == 200 and "dive_sample" in index.text


def test_fishcam_serve_serves_the_folder_until_ctrl_c(runs_root):
    import os
    import signal
    import socket
    import subprocess
    import sys
    import time

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if k != "FISHCAM_TOKEN"}
    proc = subprocess.Popen([sys.executable, "-m", "fishcam", "serve", str(runs_root), "--port", str(port)],
                            env=env, stderr=subprocess.PIPE, text=True, preexec_fn=interruptible)  # fmt: skip
    try:
        for _ in range(100):
            try:
                index = httpx.get(f"http://127.0.0.1:{port}/", timeout=1)
                break
            except httpx.HTTPError:
                time.sleep(0.1)
        assert index.status_code == 200 and "/review/dive_sample" in index.text
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    assert f"at http://127.0.0.1:{port}/" in err


def test_runs_inside_batches_are_listed_and_reviewable(runs_root, serve):
    import shutil

    shutil.copytree(runs_root / "dive_sample", runs_root / "batch-2026" / "site-a_dive")
    base = serve(create_app(runs_root))
    index = httpx.get(base + "/").text
    assert "/review/dive_sample" in index and "/review/batch-2026/site-a_dive" in index
    answer = httpx.post(f"{base}/api/correct/batch-2026/site-a_dive", json={"action": "not_fish", "track": 3,
                                                                            "reviewer": "bo"})  # fmt: skip
    assert answer.status_code == 200 and answer.json()["reviewed"] == 1
    assert (runs_root / "batch-2026" / "site-a_dive" / "review.jsonl").is_file()
    assert not (runs_root / "dive_sample" / "review.jsonl").exists()
    counts = httpx.get(f"{base}/reviewed/batch-2026/site-a_dive/species_counts.csv").text
    assert "Thalassoma lunare" not in counts and "Pterois volitans,2,2" in counts
