"""Every page through streamlit.testing.v1.AppTest, on throwaway untrained weights.

The pages run in-process, so these tests exercise the real page code, caches and widgets;
what they look like is checked by tests/test_browser.py and its screenshots.
"""

from __future__ import annotations

import gc
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from facecomp.app import first_page, server
from facecomp.app.frame import NAV
from facecomp.result import Result
from tests.appdata import ROOT, astronaut_png, make_weights_dir, old_evaluation

PAGES = ["pages/1_Compare.py", "pages/2_Latent_explorer.py", "pages/3_Benchmarks.py", "pages/4_How_it_works.py"]
TIMEOUT = 300  # generous: CI machines may be busy; a normal run takes seconds


def open_page(page: str | None = None) -> AppTest:
    at = AppTest.from_file(str(ROOT / "home.py"), default_timeout=TIMEOUT)
    at.run()
    if page:
        at.switch_page(page).run()
    return at


def assert_clean(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]


def image_urls(at: AppTest) -> list[str]:
    return [url for img in at.image for url in img.value]


def text(at: AppTest) -> str:
    return "\n".join(m.value for m in at.markdown)


# ---- every page renders -----------------------------------------------------------


@pytest.mark.slow
def test_home_renders_example_and_cards(use_weights: Path) -> None:
    at = open_page()
    assert_clean(at)
    assert len(at.image) == 3  # the crop, AE and VAE of the live example
    assert "bytes" in text(at)
    assert len(at.get("page_link")) == 4 + len(NAV)  # body links + sidebar menu
    assert "| AE |" in text(at) and "| VAE |" in text(at)  # the loaded weights' cards


@pytest.mark.slow
@pytest.mark.parametrize("page", PAGES)
def test_every_page_renders(use_weights: Path, page: str) -> None:
    assert_clean(open_page(page))


@pytest.mark.slow
@pytest.mark.parametrize("page", ["pages/2_Latent_explorer.py", "pages/4_How_it_works.py"])
def test_pictures_go_out_as_png(use_weights: Path, page: str) -> None:
    """A codec demo must not add artefacts of its own: Streamlit sends RGB pictures as JPEG
    unless told otherwise (the sample grids were)."""
    urls = image_urls(open_page(page))
    assert urls and all(url.endswith(".png") for url in urls), urls


@pytest.mark.slow
def test_benchmarks_draws_every_chart(use_weights: Path) -> None:
    at = open_page("pages/3_Benchmarks.py")
    assert_clean(at)
    assert not at.warning  # the evaluation names the weights loaded
    # quality against bytes (three panels, one figure), latent, noise, 3 histograms, training
    assert len(at.get("plotly_chart")) == 7
    budgets = at.table[0].value
    assert list(budgets.index) == ["64", "128", "256", "512", "1,024", "2,048"]
    assert list(budgets.columns) == ["AE", "VAE", "JPEG", "WebP"]
    assert budgets.loc["64", "JPEG"] == "none fit · 0/5"
    assert budgets.loc["1,024", "AE"] == "26.00 · 100% · 5/5"
    assert "JPEG 980" in " ".join(c.value for c in at.caption)  # JPEG's smallest files, in the chart's caption
    at.get("button_group")[0].set_value("ssim").run()
    assert_clean(at)


@pytest.mark.slow
def test_benchmarks_before_the_budget_table(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FACECOMP_WEIGHTS_DIR", str(make_weights_dir(tmp_path, evaluation=old_evaluation())))
    at = open_page("pages/3_Benchmarks.py")
    assert_clean(at)
    assert any("no budget table yet" in i.value for i in at.info)
    # Written before evaluations named their weights: nothing says these weights were measured.
    assert [w.value for w in at.warning if "not measured with the AE and VAE weights" in w.value]
    assert not at.table
    assert len(at.get("plotly_chart")) == 6  # all but quality against bytes


@pytest.mark.slow
def test_benchmarks_without_evaluation_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FACECOMP_WEIGHTS_DIR", str(make_weights_dir(tmp_path, evaluation=False)))
    at = open_page("pages/3_Benchmarks.py")
    assert_clean(at)
    assert any("No evaluation yet" in i.value for i in at.info)
    assert len(at.get("plotly_chart")) == 1  # training curves from the cards still show


@pytest.mark.slow
def test_how_it_works_has_diagrams(use_weights: Path) -> None:
    at = open_page("pages/4_How_it_works.py")
    assert_clean(at)
    assert len(at.get("graphviz_chart")) == 2
    assert len(at.tabs) == 6
    assert text(at).count("sharp decoding · MSE decoding") == 2  # one file of each model, decoded both ways


def test_missing_weights_is_one_message(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FACECOMP_WEIGHTS_DIR", str(tmp_path))
    at = open_page()
    assert not at.exception
    assert len(at.error) == 1 and "could not be loaded" in at.error[0].value


# ---- Compare ------------------------------------------------------------------------


def upload(at: AppTest, prefix: str, name: str, data: bytes, mime: str = "image/png") -> AppTest:
    at.radio(key=f"{prefix}_source").set_value("Upload").run()
    at.file_uploader(key=f"{prefix}_upload").set_value((name, data, mime))
    return at.run()


@pytest.mark.slow
def test_compare_upload_of_real_photo_shows_every_codec(use_weights: Path) -> None:
    at = upload(open_page("pages/1_Compare.py"), "compare", "astronaut.png", astronaut_png())
    assert_clean(at)
    # Original, AE, VAE, JPEG, WebP, AVIF, HEIC, JPEG XL, then the photo with boxes (folded away)
    assert len(at.image) == 9
    headings = [m.value for m in at.markdown if m.value.startswith("### ")]
    assert headings == [
        "### Original",
        "### AE",
        "### VAE",
        "### JPEG",
        "### WebP",
        "### AVIF",
        "### HEIC",
        "### JPEG XL",
    ]
    body = text(at)
    assert "PSNR" in body and "SSIM" in body and "bpp" in body and "49,152 bytes" in body
    assert "same person" in body or "another person?" in body  # identity under the pictures
    names = [b.proto.label for b in at.get("download_button")]
    assert names.count(".fcz") == 2 and "PNG" in names


@pytest.mark.slow
def test_compare_budget_changes_output(use_weights: Path) -> None:
    at = open_page("pages/1_Compare.py")
    assert_clean(at)
    assert (
        at.select_slider(key="compare_budget").value == 256 and at.selectbox(key="compare_latent").value == "automatic"
    )
    before, before_text = image_urls(at), text(at)
    assert "needs" in before_text  # at 256 bytes some classic codec shows its smallest file, marked
    assert len(at.image) == 9  # every codec shows a picture, and the photo
    at.select_slider(key="compare_budget").set_value(2048).run()
    assert_clean(at)
    assert image_urls(at)[0] == before[0]  # same original
    assert "needs" not in text(at)  # every file fits 2 KB
    assert text(at) != before_text  # sizes and scores changed (untrained weights may look alike)


@pytest.mark.slow
def test_compare_runs_are_freed_without_the_garbage_collector(use_weights: Path) -> None:
    """A run's namespace (its results, pictures and photo) must go when the run ends. A function
    defined in the page put it in a reference cycle, which only a full garbage collection frees:
    in the server, that came after hundreds of uploads."""
    at = open_page("pages/1_Compare.py")
    gc.collect()
    gc.disable()
    try:
        for budget in (512, 1024, 256):
            at.select_slider(key="compare_budget").set_value(budget).run()
        alive = [o for o in gc.get_objects() if type(o) is dict and str(o.get("__file__")).endswith("1_Compare.py")]
    finally:
        gc.enable()
    assert_clean(at)
    assert len(alive) <= 1  # at most the last run's


@pytest.mark.slow
def test_compare_fixed_latent_size(use_weights: Path) -> None:
    at = open_page("pages/1_Compare.py")
    at.selectbox(key="compare_latent").set_value(16).run()
    assert_clean(at)
    assert text(at).count("latent 16") == 2  # AE and VAE


@pytest.mark.slow
def test_compare_heat_map_toggle(use_weights: Path) -> None:
    at = open_page("pages/1_Compare.py")
    before = image_urls(at)
    at.toggle(key="compare_heatmap").set_value(True).run()
    assert_clean(at)
    after = image_urls(at)
    assert after[0] == before[0]  # the original stays
    assert after[1] != before[1]  # AE shown as its error map


def test_compare_sharp_switch_decodes_the_same_files_for_realism(use_weights: Path) -> None:
    at = open_page("pages/1_Compare.py")
    before, cards = image_urls(at), text(at)
    at.toggle(key="compare_sharp").set_value(True).run()
    assert_clean(at)
    after = image_urls(at)
    assert after[0] == before[0] and after[3:] == before[3:]  # the original and the classic codecs stay
    assert after[1] != before[1] and after[2] != before[2]  # AE and VAE: their sharp decodings
    shown = text(at)
    assert shown.count("sharp decoding · MSE decoding") == 2 and "fine detail" in shown and "fine detail" not in cards


@pytest.mark.slow
def test_compare_unreadable_upload_shows_one_error(use_weights: Path) -> None:
    at = upload(open_page("pages/1_Compare.py"), "compare", "broken.jpg", b"this is not a photo", "image/jpeg")
    assert not at.exception
    assert len(at.error) == 1
    assert "could not be used as a photo" in at.error[0].value
    assert len(at.image) == 0


@pytest.mark.slow
def test_compare_no_face_offers_centred_crop(use_weights: Path) -> None:
    from PIL import Image

    from facecomp.visual import png_bytes

    blank = png_bytes(Image.new("RGB", (300, 200), (120, 160, 200)))
    at = upload(open_page("pages/1_Compare.py"), "compare", "sky.png", blank)
    assert_clean(at)
    assert any("No face found" in w.value for w in at.warning)
    assert len(at.image) == 0
    at.checkbox(key="compare_centre").check().run()
    assert_clean(at)
    assert len(at.image) == 9


@pytest.mark.slow
def test_compare_grace_hopper_builtin(use_weights: Path) -> None:
    """Picking the other built-in photo compares its face: the pictures the page shows are the
    ones an upload of that very photo gives, not the default astronaut's."""
    from facecomp.comparison import builtin_photo_bytes

    name = "Grace Hopper (matplotlib)"
    at = open_page("pages/1_Compare.py")
    astronaut = image_urls(at)  # a picture's URL is its content's hash
    at.selectbox(key="compare_builtin").set_value(name).run()
    assert_clean(at)
    chosen = image_urls(at)
    assert len(chosen) == 9 and chosen[0] != astronaut[0] and chosen[-1] != astronaut[-1]  # crop, photo
    assert any(c.value.startswith(f"{name}: every file") for c in at.caption)
    uploaded = upload(open_page("pages/1_Compare.py"), "compare", "hopper.jpg", builtin_photo_bytes(name), "image/jpeg")
    assert_clean(uploaded)
    assert image_urls(uploaded) == chosen


# ---- Latent explorer -----------------------------------------------------------------


@pytest.mark.slow
def test_explorer_slider_move_changes_face(use_weights: Path) -> None:
    at = open_page("pages/2_Latent_explorer.py")
    assert_clean(at)
    before = image_urls(at)
    at.slider(key="explore_Smiling").set_value(2.0).run()
    assert_clean(at)
    after = image_urls(at)
    assert after[0] == before[0]  # start face unchanged
    assert after[1] != before[1]  # edited face redrawn
    at.button[0].click().run()  # reset
    assert at.slider(key="explore_Smiling").value == 0.0


def test_explorer_draws_sharp_by_default_and_switches_back(use_weights: Path) -> None:
    at = open_page("pages/2_Latent_explorer.py")
    sharp = image_urls(at)
    assert at.toggle(key="explore_sharp").value is True
    at.toggle(key="explore_sharp").set_value(False).run()
    assert_clean(at)
    mse = image_urls(at)
    changed = [a != b for a, b in zip(sharp, mse, strict=True)]
    assert len(mse) == len(sharp) and changed[0] is False and all(changed[1:])  # all but the start photo


@pytest.mark.slow
def test_explorer_named_sliders_and_bias_note(use_weights: Path) -> None:
    at = open_page("pages/2_Latent_explorer.py")
    captions = "\n".join(c.value for c in at.caption)
    assert "biases" in captions and "CelebA" in captions and "UTKFace" in captions
    labels = [s.label for s in at.slider]
    # A direction below the accuracy bar is never a slider; main directions sit under "more".
    assert {"Smiling", "Age", "Main direction 1"} <= set(labels) and "Hat" not in labels
    before = image_urls(at)
    at.slider(key="explore_Age").set_value(-3.0).run()
    assert_clean(at)
    assert image_urls(at)[1] != before[1]
    at.slider(key="explore_Main direction 1").set_value(3.0).run()
    assert image_urls(at)[1] != before[1]


@pytest.mark.slow
def test_explorer_upload_and_morph(use_weights: Path) -> None:
    at = upload(open_page("pages/2_Latent_explorer.py"), "explore", "astronaut.png", astronaut_png())
    assert_clean(at)
    before = image_urls(at)
    at.slider(key="morph_t").set_value(0.9).run()
    assert_clean(at)
    after = image_urls(at)
    changed = [i for i, (a, b) in enumerate(zip(before, after, strict=True)) if a != b]
    assert len(changed) == 1  # only the in-between face
    gifs = [b for b in at.get("download_button") if "GIF" in b.proto.label]
    assert len(gifs) == 1


@pytest.mark.slow
def test_explorer_sample_seed_changes_grid(use_weights: Path) -> None:
    at = open_page("pages/2_Latent_explorer.py")
    before = image_urls(at)[-1]
    at.number_input(key="grid_seed").set_value(5).run()
    assert_clean(at)
    assert image_urls(at)[-1] != before


# ---- the shipped weights ---------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("refiner", ["missing", "altered"])
def test_without_a_usable_sharp_decoding_the_pages_offer_the_mse_decoding(
    weights_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, refiner: str
) -> None:
    import shutil

    folder = tmp_path / "weights"
    shutil.copytree(weights_dir, folder)
    if refiner == "missing":
        (folder / "sharp.safetensors").unlink()
    else:  # a file that does not match its card
        (folder / "sharp.safetensors").write_bytes(b"not the weights the card names")
    monkeypatch.setenv("FACECOMP_WEIGHTS_DIR", str(folder))
    for page in PAGES:
        at = open_page(page)
        assert_clean(at)
        assert not [t for t in at.toggle if t.key in ("explore_sharp", "compare_sharp")]
    assert "No sharp decoding" in "\n".join(i.value for i in open_page("pages/4_How_it_works.py").info)


@pytest.mark.slow
@pytest.mark.skipif(not (ROOT / "weights" / "vae.safetensors").exists(), reason="no shipped weights yet")
def test_pages_with_shipped_weights(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FACECOMP_WEIGHTS_DIR", str(ROOT / "weights"))
    for page in [None, *PAGES]:
        assert_clean(open_page(page))


@pytest.mark.slow
def test_compare_oversized_photo_shows_one_error(use_weights: Path) -> None:
    from PIL import Image

    from facecomp.faces import MAX_PIXELS
    from facecomp.visual import png_bytes

    side = int(MAX_PIXELS**0.5) + 100  # a small file (1-bit, compresses well) with too many pixels
    huge = png_bytes(Image.new("1", (side, side)))
    at = upload(open_page("pages/1_Compare.py"), "compare", "huge.png", huge)
    assert not at.exception
    assert len(at.error) == 1 and "limit" in at.error[0].value


def two_faces_png() -> bytes:
    """Astronaut and Grace Hopper side by side: a real photo with two faces."""
    from PIL import Image

    from facecomp.comparison import builtin_photo_bytes, open_photo
    from facecomp.visual import png_bytes

    names = ("Astronaut (scikit-image)", "Grace Hopper (matplotlib)")
    left, right = (open_photo(builtin_photo_bytes(n)).image for n in names)
    sheet = Image.new("RGB", (left.width + right.width, max(left.height, right.height)), "white")
    sheet.paste(left, (0, 0))
    sheet.paste(right, (left.width, 0))
    return png_bytes(sheet)


@pytest.mark.slow
def test_compare_several_faces_lets_the_user_pick(use_weights: Path) -> None:
    at = upload(open_page("pages/1_Compare.py"), "compare", "two.png", two_faces_png())
    assert_clean(at)
    picker = at.radio(key="compare_face")
    assert len(picker.options) >= 2
    first = image_urls(at)[1]  # the crop
    picker.set_value(1).run()
    assert_clean(at)
    assert image_urls(at)[1] != first


@pytest.mark.slow
def test_compare_camera_photo(use_weights: Path) -> None:
    import io

    from PIL import Image

    from facecomp.comparison import builtin_photo_bytes

    buf = io.BytesIO()
    Image.open(io.BytesIO(builtin_photo_bytes("Grace Hopper (matplotlib)"))).save(buf, format="JPEG")
    at = open_page("pages/1_Compare.py")
    at.radio(key="compare_source").set_value("Camera").run()
    at.camera_input(key="compare_camera").set_value(("shot.jpg", buf.getvalue(), "image/jpeg")).run()
    assert_clean(at)
    assert len(at.image) == 9


@pytest.mark.slow
def test_explorer_morph_to_a_fcz_file(use_weights: Path) -> None:
    """A .fcz file made on Compare is a face to morph to (its code is used as it is)."""
    from facecomp import comparison
    from facecomp.codec import fcz
    from facecomp.visual import to_tensor
    from facecomp.weights import load_model

    vae, _ = load_model("vae", use_weights)
    crop = comparison.choose_crop(comparison.open_photo(astronaut_png()), 0)
    data = fcz.compress(vae, to_tensor(crop), 128).data
    at = open_page("pages/2_Latent_explorer.py")
    before = image_urls(at)
    at = upload(at, "morph", "my_face.fcz", data, "application/octet-stream")
    assert_clean(at)
    assert any("B: my_face.fcz" in (img.proto.imgs[0].caption if img.proto.imgs else "") for img in at.image)
    assert image_urls(at)[:2] == before[:2] and image_urls(at) != before  # start face kept, B and the morph new


def _blocked_pool(workers: int = 1) -> tuple[server.HeavyPool, threading.Event]:
    """A pool whose workers are all busy until the returned event is set."""
    pool = server.HeavyPool(workers, lambda: None)
    started, release = threading.Semaphore(0), threading.Event()

    def blocker() -> None:
        started.release()
        release.wait(10)

    for _ in range(workers):
        pool.submit(blocker, server.HeavyPool.LONG)
    for _ in range(workers):
        assert started.acquire(timeout=10)
    return pool, release


def test_heavy_pool_runs_quick_jobs_before_waiting_long_ones() -> None:
    """A photo's detection must not queue behind comparisons that arrived before it."""
    pool, release = _blocked_pool()
    order = []
    tickets = [pool.submit(lambda n=n: order.append(n), server.HeavyPool.LONG) for n in ("long 1", "long 2")]
    tickets.append(pool.submit(lambda: order.append("quick"), server.HeavyPool.QUICK))
    failing = pool.submit(lambda: 1 / 0, server.HeavyPool.LONG)
    release.set()
    for ticket in tickets:
        ticket.future.result(10)
    assert order == ["quick", "long 1", "long 2"]
    with pytest.raises(ZeroDivisionError):
        failing.future.result(10)


def test_a_waiting_job_hears_how_many_are_ahead_of_it() -> None:
    """The waiting line: the running job and those queued before count; quick ones jump the line."""
    pool, release = _blocked_pool()
    first, second = (pool.submit(lambda: None, server.HeavyPool.LONG) for _ in range(2))
    assert (first.ahead(), second.ahead()) == (1, 2)
    quick = pool.submit(lambda: None, server.HeavyPool.QUICK)
    assert (quick.ahead(), second.ahead()) == (1, 3)
    heard: list[int] = []
    threading.Timer(0.6, release.set).start()
    assert server.wait(second, heard.append) is None
    assert heard and heard[0] == 3 and heard == sorted(heard, reverse=True)
    assert second.ahead() == 0
    pool, release = _blocked_pool(workers=2)  # two busy: the next job starts when one of them ends
    third, fourth = (pool.submit(lambda: None, server.HeavyPool.LONG) for _ in range(2))
    assert (third.ahead(), fourth.ahead()) == (1, 2)
    assert third.cancel() and fourth.ahead() == 1  # a dropped job no longer counts
    release.set()
    assert fourth.future.result(10) is None and third.future.cancelled()


def test_a_comparison_nobody_waits_for_any_more_is_dropped(monkeypatch: pytest.MonkeyPatch) -> None:
    """A visitor who changes a widget while their comparison waits ends the wait (Streamlit's
    rerun, a BaseException): the job, not started, is dropped rather than run for nobody."""
    pool, release = _blocked_pool()
    monkeypatch.setattr(server, "_heavy_pool", pool)
    monkeypatch.setattr(server, "WAIT_POLL_S", 0.05)
    shared, ran = server.SharedResults(max_entries=4), []

    class Rerun(BaseException):
        pass

    def leave(ahead: int) -> None:
        raise Rerun

    with pytest.raises(Rerun):
        shared.get("face", lambda: ran.append(1), on_wait=leave)
    release.set()
    assert shared.get("face", lambda: ran.append(2) or "again") == "again" and ran == [2]


def test_shared_results_compute_once_and_forget_failures(monkeypatch: pytest.MonkeyPatch) -> None:
    """Two sessions asking for one comparison share one computation; one that raised is tried again."""
    pool, release = _blocked_pool()
    monkeypatch.setattr(server, "_heavy_pool", pool)
    shared, calls = server.SharedResults(max_entries=2), []
    results: list[object] = []

    def work() -> str:
        calls.append(1)
        return "done"

    askers = [threading.Thread(target=lambda: results.append(shared.get("face", work))) for _ in range(3)]
    for asker in askers:
        asker.start()
    release.set()
    for asker in askers:
        asker.join(10)
    assert results == ["done"] * 3 and len(calls) == 1
    tries = []

    def flaky() -> str:
        tries.append(1)
        if len(tries) == 1:
            raise OSError("once")
        return "again"

    with pytest.raises(OSError):
        shared.get("other", flaky)
    assert shared.get("other", flaky) == "again" and len(tries) == 2
    shared.get("third", work)
    assert shared.get("face", work) == "done" and len(calls) == 3  # "face" was the oldest of three: dropped


# ---- the first page from disk -----------------------------------------------------


@pytest.mark.slow
def test_home_is_kept_on_disk_and_drawn_from_it_without_torch(
    use_weights: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first Home computes the example and keeps it; a new server process draws the same
    page from disk without importing torch (the seconds of a cold start)."""
    monkeypatch.setenv("FACECOMP_CACHE_DIR", str(tmp_path))
    st.cache_data.clear()  # Home's example computed afresh, as in a new server
    first = open_page()
    assert_clean(first)
    assert list(tmp_path.glob("home-*.json"))
    code = (
        "import sys; from streamlit.testing.v1 import AppTest; "
        "at = AppTest.from_file('home.py', default_timeout=120); at.run(); "
        "print('torch' in sys.modules, [e.value for e in at.exception], "
        "'\\n'.join(m.value for m in at.markdown))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, env=os.environ.copy())
    assert out.returncode == 0, out.stderr
    no_torch, exceptions, markdown = out.stdout.split(" ", 2)
    assert (no_torch, exceptions) == ("False", "[]")
    assert markdown.strip() == text(first)  # the same bytes, PSNR, SSIM and cards


def test_kept_example_is_dropped_when_a_weights_file_changes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FACECOMP_CACHE_DIR", str(tmp_path / "cache"))
    folder = tmp_path / "weights"
    folder.mkdir()
    (folder / "ae.safetensors").write_bytes(b"weights")
    files = [folder / "ae.safetensors", folder / "detail-ae.safetensors"]  # no detail layer yet
    res = Result("AE", None, 200, 24.5, 0.7, b"fcz", "face_ae.fcz", "latent 64", {"estimated_bytes": 199.0}, png=b"png")
    first_page.save(folder, files, first_page.Example("photo", 256, b"crop", [res], {"ae": {"sha256": "ab"}}))
    kept = first_page.read(folder)
    assert kept == first_page.Example("photo", 256, b"crop", [res], {"ae": {"sha256": "ab"}})
    (folder / "detail-ae.safetensors").write_bytes(b"detail")  # a detail layer added
    assert first_page.read(folder) is None
    (folder / "detail-ae.safetensors").unlink()
    assert first_page.read(folder) == kept
    (folder / "ae.safetensors").write_bytes(b"retrained")
    assert first_page.read(folder) is None


def test_example_not_kept_where_the_cache_is_not_writable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Where the cache folder cannot be made, save() keeps nothing and says nothing (Home still
    draws); where it can, the same call keeps the example for read()."""
    weights = tmp_path / "weights"
    weights.mkdir()
    (weights / "ae.safetensors").write_bytes(b"weights")
    files = [weights / "ae.safetensors"]
    res = Result("AE", None, 200, 24.5, 0.7, b"fcz", "face_ae.fcz", "latent 64", {"estimated_bytes": 199.0}, png=b"png")
    example = first_page.Example("photo", 256, b"crop", [res], {"ae": {"sha256": "ab"}})
    (tmp_path / "file").write_text("a file, not a folder")
    monkeypatch.setenv("FACECOMP_CACHE_DIR", str(tmp_path / "file" / "cache"))  # even root cannot create this
    first_page.save(weights, files, example)  # no exception
    assert first_page.read(weights) is None
    assert (tmp_path / "file").read_text() == "a file, not a folder"
    monkeypatch.setenv("FACECOMP_CACHE_DIR", str(tmp_path / "cache"))
    assert first_page.read(weights) is None  # nothing kept there yet
    first_page.save(weights, files, example)
    assert first_page.read(weights) == example
    assert [p.suffix for p in (tmp_path / "cache").iterdir()] == [".json"]  # no partial file left behind
