"""The real app in a real browser: `streamlit run app.py` driven by headless Chromium.

Opens every page, uploads a photo on Compare, moves a slider on the explorer and saves a
screenshot of each step to $SCREENSHOT_DIR (default: a pytest temporary folder).
Needs Debian's `chromium` package and `pip install playwright` (never `playwright install`).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from facecomp.latent import explorer
from facecomp.measure.latent_report import load_latent_space_report
from facecomp.weights import load_model
from tests.appdata import ROOT, astronaut_png, make_weights_dir

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
START_TIMEOUT = 120  # seconds for the server to answer its health check
RENDER_TIMEOUT = 120_000  # ms for a page to finish drawing on a busy machine

pytestmark = pytest.mark.slow  # a real server and browser: minutes

if not Path(CHROMIUM).exists():
    pytest.skip(f"{CHROMIUM} is not installed (apt-get install chromium)", allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_healthy(url: str, proc: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"streamlit exited with status {proc.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as resp:
                if resp.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    raise TimeoutError(f"streamlit did not answer at {url} within {timeout} s")


def start_server(weights: Path, port: int) -> subprocess.Popen:
    env = dict(os.environ, FACECOMP_WEIGHTS_DIR=str(weights), PYTHONPATH=str(ROOT))
    cmd = [sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true"]
    cmd += ["--server.port", str(port), "--server.address", "127.0.0.1", "--browser.gatherUsageStats", "false"]
    return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def stop_server(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@pytest.fixture(scope="module")
def served_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # What a user gets: the shipped weights (the app tests cover throwaway ones).
    shipped = ROOT / "weights"
    has_shipped = (shipped / "ae.json").exists() and (shipped / "vae.json").exists()
    return shipped if has_shipped else make_weights_dir(tmp_path_factory.mktemp("browser_weights"))


@pytest.fixture(scope="module")
def server(served_weights: Path) -> Iterator[str]:
    weights = served_weights
    port = free_port()
    proc = start_server(weights, port)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, proc, START_TIMEOUT)
        yield url
    finally:
        stop_server(proc)


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = Path(os.environ.get("SCREENSHOT_DIR") or tmp_path_factory.mktemp("screenshots"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="module")
def page(server: str) -> Iterator[object]:
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        context = browser.new_context(viewport={"width": 1600, "height": 1000})
        pg = context.new_page()
        pg.set_default_timeout(RENDER_TIMEOUT)
        yield pg
        browser.close()


def settle(pg: object) -> None:
    """Wait until the script run is over: the 'Running…' status widget has gone."""
    pg.wait_for_timeout(500)
    pg.wait_for_selector('[data-testid="stStatusWidget"]', state="detached")
    pg.wait_for_timeout(300)


def assert_no_exception(pg: object) -> None:
    assert pg.locator('[data-testid="stException"]').count() == 0


def images(pg: object) -> list[str]:
    return pg.locator('[data-testid="stImage"] img').evaluate_all("els => els.map(e => e.src)")


def wait_images(pg: object, n: int) -> None:
    pg.wait_for_function(
        "n => [...document.querySelectorAll('[data-testid=\"stImage\"] img')]"
        ".filter(i => i.complete && i.naturalWidth > 0).length >= n",
        arg=n,
    )


def shoot(pg: object, path: Path) -> None:
    """A screenshot of the whole page: Streamlit scrolls an inner container, so grow the window to fit it."""
    height = pg.evaluate(
        "() => Math.max(...[...document.querySelectorAll('[data-testid=\"stMain\"], section, div')]"
        ".map(e => e.scrollHeight))"
    )
    size = pg.viewport_size
    pg.set_viewport_size({"width": size["width"], "height": min(max(height, size["height"]), 6000)})
    pg.wait_for_timeout(500)
    pg.screenshot(path=path)
    pg.set_viewport_size(size)


def drag_slider(pg: object, label: str, dx: float) -> None:
    """Drag a slider's thumb sideways with the mouse, as a user does (a drag commits on release)."""
    slider = pg.locator('[data-testid="stSlider"]').filter(has=pg.get_by_role("slider", name=label))
    box = slider.locator('div[style*="left"]').first.bounding_box()
    x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    pg.mouse.move(x, y)
    pg.mouse.down()
    pg.mouse.move(x + dx, y, steps=5)
    pg.mouse.up()


def drag_until_redrawn(pg: object, label: str, dx: float, image: int, timeout_ms: int = 60_000) -> None:
    """Drag a slider and wait until image number `image` shows a new picture."""
    before = images(pg)[image]
    drag_slider(pg, label, dx)
    pg.wait_for_function(
        "([n, old]) => { const i = document.querySelectorAll('[data-testid=\"stImage\"] img'); "
        "return i.length > n && i[n].src !== old && i[n].complete; }",
        arg=[image, before],
        timeout=timeout_ms,
    )


def test_home(page: object, server: str, shots: Path) -> None:
    page.goto(server)
    page.get_by_text("Live example").wait_for()
    wait_images(page, 3)
    settle(page)
    assert_no_exception(page)
    shoot(page, shots / "1_home.png")


def test_compare_upload(page: object, server: str, shots: Path, tmp_path: Path) -> None:
    page.goto(f"{server}/Compare")
    wait_images(page, 8)  # the built-in photo first
    settle(page)
    shoot(page, shots / "2_compare_builtin.png")
    page.get_by_text("Upload", exact=True).click()
    photo = tmp_path / "astronaut.png"
    photo.write_bytes(astronaut_png())
    page.locator('[data-testid="stFileUploader"] input[type="file"]').set_input_files(str(photo))
    page.get_by_text("astronaut.png", exact=False).first.wait_for()
    page.get_by_role("heading", name="JPEG XL").wait_for()
    wait_images(page, 8)  # Original, AE, VAE and five classic codecs (the photo is folded away)
    settle(page)
    assert_no_exception(page)
    assert page.get_by_text("PSNR").count() == 7  # every codec shows its picture, over budget or not
    shoot(page, shots / "3_compare_upload.png")
    # A projector: the pictures and their numbers on the first screen, nothing cut off.
    page.set_viewport_size({"width": 1280, "height": 720})
    settle(page)
    page.screenshot(path=shots / "3_compare_1280x720.png")
    for files in page.get_by_role("button", name="Files").all():
        box = files.bounding_box()
        assert box["y"] + box["height"] <= 720 and box["x"] + box["width"] <= 1280
    page.set_viewport_size({"width": 1600, "height": 1000})
    page.get_by_text("Error heat map").click()
    settle(page)
    shoot(page, shots / "4_compare_heatmap.png")


def first_slider(weights: Path) -> str:
    """The label of the explorer's first default slider for these weights."""
    vae = load_model("vae", weights)[0].network
    shown, _ = explorer.editor_directions(vae, load_latent_space_report(weights).get("edits"))
    return shown[0].name


def test_explorer_slider(page: object, server: str, served_weights: Path, shots: Path) -> None:
    label = first_slider(served_weights)
    page.goto(f"{server}/Latent_explorer")
    page.get_by_text("Edited").first.wait_for()
    wait_images(page, 6)
    settle(page)
    before = images(page)
    shoot(page, shots / "5_explorer.png")
    drag_until_redrawn(page, label, 40, image=1)
    settle(page)
    assert_no_exception(page)
    after = images(page)
    assert after[0] == before[0] and after[1] != before[1]
    assert float(page.get_by_role("slider", name=label).get_attribute("value")) > 0.5
    shoot(page, shots / "6_explorer_moved.png")


def test_benchmarks(page: object, server: str, shots: Path) -> None:
    page.goto(f"{server}/Benchmarks")
    page.locator(".js-plotly-plot").first.wait_for()
    settle(page)
    assert page.locator(".js-plotly-plot").count() == 7
    assert_no_exception(page)
    shoot(page, shots / "7_benchmarks.png")


def test_how_it_works(page: object, server: str, shots: Path) -> None:
    page.goto(f"{server}/How_it_works")
    page.locator('[data-testid="stGraphVizChart"] svg').first.wait_for()
    settle(page)
    assert_no_exception(page)
    shoot(page, shots / "8_how_it_works.png")
    page.get_by_role("tab", name="AE vs VAE").click()
    page.wait_for_timeout(500)
    shoot(page, shots / "9_how_it_works_vae.png")
