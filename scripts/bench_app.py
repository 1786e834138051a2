"""Benchmark the app: first page render after `streamlit run app.py`, and a slider move's redraw.

    python scripts/bench_app.py [--weights DIR] [--moves 20]

1. Cold start: starts `streamlit run app.py`, opens Home in headless Chromium (already
   running, so its own start-up is not counted) and waits until the live example's images
   have loaded and the script run is over. Prints seconds from the server's launch. Home's
   example is kept on disk by the first start (facecomp/app/first_page.py); to time a very first
   start, give an empty cache folder: FACECOMP_CACHE_DIR=$(mktemp -d) python scripts/bench_app.py
2. Slider move, browser round trip: mouse drag to the new image on screen.
3. Server time of a Compare rerun and an explorer slider move (AppTest: the page scripts rerun
   as Streamlit runs them, without a browser).

Weights: --weights, else $FACECOMP_WEIGHTS_DIR, else the shipped weights/.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run as a script from anywhere

from facecomp.measure.bench import summary  # noqa: E402
from facecomp.spec import COMPARE_BUDGETS  # noqa: E402
from tests.test_browser import (  # noqa: E402
    CHROMIUM,
    CHROMIUM_ARGS,
    drag_slider,
    drag_until_redrawn,
    free_port,
    start_server,
    stop_server,
    wait_healthy,
)


def app_reruns(weights_dir: Path | None, moves: int) -> dict:
    """Server time of a Compare rerun (byte budget changed) and an explorer slider move, via AppTest.

    AppTest reruns the whole page script; a browser reruns only the slider's fragment, so
    the slider number is an upper bound of what one user waits for on the server.
    """
    from streamlit.testing.v1 import AppTest

    if weights_dir:
        os.environ["FACECOMP_WEIGHTS_DIR"] = str(weights_dir)
    at = AppTest.from_file(str(ROOT / "home.py"), default_timeout=300)
    at.run()
    at.switch_page("pages/1_Compare.py").run()
    compare_times = []
    for i in range(moves):
        widget = at.select_slider(key="compare_budget").set_value(COMPARE_BUDGETS[i % len(COMPARE_BUDGETS)])
        start = time.perf_counter()
        widget.run()
        compare_times.append((time.perf_counter() - start) * 1000)
    at.switch_page("pages/2_Latent_explorer.py").run()
    key = next(s.key for s in at.slider if s.key and s.key.startswith("explore_"))
    at.slider(key=key).set_value(0.1).run()  # warm every cache once
    slider_times = []
    for i in range(moves):
        widget = at.slider(key=key).set_value(round(0.1 * ((i % 20) - 10), 1))
        start = time.perf_counter()
        widget.run()
        slider_times.append((time.perf_counter() - start) * 1000)
        if at.exception:
            raise RuntimeError(f"explorer raised: {at.exception[0].value}")

    return {"compare_rerun": summary(compare_times), "explorer_slider_rerun": {"slider": key, **summary(slider_times)}}


def pick_weights(arg: str | None) -> Path:
    if arg:
        return Path(arg)
    if os.environ.get("FACECOMP_WEIGHTS_DIR"):
        return Path(os.environ["FACECOMP_WEIGHTS_DIR"])
    return ROOT / "weights"


def wait_settled(pg, images: int) -> None:
    pg.wait_for_function(
        "n => [...document.querySelectorAll('[data-testid=\"stImage\"] img')]"
        ".filter(i => i.complete && i.naturalWidth > 0).length >= n",
        arg=images,
        timeout=120_000,
    )
    pg.wait_for_selector('[data-testid="stStatusWidget"]', state="detached", timeout=120_000)


def browser_bench(weights: Path, moves: int) -> dict[str, float | list[float]]:
    from playwright.sync_api import TimeoutError as PlaywrightTimeout
    from playwright.sync_api import sync_playwright

    out: dict[str, float | list[float]] = {}
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        pg = browser.new_page(viewport={"width": 1600, "height": 1000})
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        t0 = time.perf_counter()
        proc = start_server(weights, port)
        try:
            wait_healthy(url, proc, 120)
            out["server_ready_s"] = time.perf_counter() - t0
            pg.goto(url)
            wait_settled(pg, 3)
            out["home_rendered_s"] = time.perf_counter() - t0

            pg.goto(f"{url}/Latent_explorer")
            wait_settled(pg, 6)
            labels = slider_labels(weights)
            drag_until_redrawn(pg, labels[0], -30, image=1)  # warm-up
            times, missed = [], 0
            for i in range(moves):
                label = labels[(i // 4) % len(labels)]  # 4 moves per slider, rightwards: every move a new value
                before = pg.locator('[data-testid="stImage"] img').nth(1).get_attribute("src")
                t = time.perf_counter()
                drag_slider(pg, label, 15)
                try:
                    pg.wait_for_function(
                        "old => { const i = document.querySelectorAll('[data-testid=\"stImage\"] img'); "
                        "return i.length > 1 && i[1].src !== old && i[1].complete; }",
                        arg=before,
                        timeout=10_000,
                    )
                    times.append(time.perf_counter() - t)
                except PlaywrightTimeout:
                    missed += 1
            out["slider_missed"] = missed
            out["slider_round_trip_s"] = times
        finally:
            stop_server(proc)
            browser.close()
    return out


def slider_labels(weights: Path) -> list[str]:
    """The explorer's default sliders for these weights."""
    from facecomp.latent import explorer
    from facecomp.measure.latent_report import load_latent_space_report
    from facecomp.weights import load_model

    vae = load_model("vae", weights)[0].network
    shown, _ = explorer.editor_directions(vae, load_latent_space_report(weights).get("edits"))
    return [d.name for d in shown]


def ms(values: list[float]) -> str:
    return f"median {1000 * statistics.median(values):.0f} ms, min {1000 * min(values):.0f} ms, n={len(values)}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", help="weights folder (default: see above)")
    parser.add_argument("--moves", type=int, default=20, help="slider moves to time")
    args = parser.parse_args()
    weights = pick_weights(args.weights)
    print(f"weights: {weights}")
    import torch

    print(f"torch threads: {torch.get_num_threads()}, CPUs: {os.cpu_count()}")

    if Path(CHROMIUM).exists():
        res = browser_bench(weights, args.moves)
        print(f"cold start: server healthy after {res['server_ready_s']:.2f} s")
        print(f"cold start: Home fully rendered {res['home_rendered_s']:.2f} s after `streamlit run app.py`")
        trip = ms(res["slider_round_trip_s"])
        print(f"slider move, browser round trip (fragment rerun + PNG + network + paint): {trip}")
        if res["slider_missed"]:
            print(f"  ({res['slider_missed']} drags did not redraw within 10 s and were not timed)")
    else:
        print(f"{CHROMIUM} missing: skipping the cold-start and round-trip measurements")

    slider = app_reruns(weights, args.moves)["explorer_slider_rerun"]
    print(f"slider move, server time of a full explorer-page rerun (AppTest, models cached): {slider}")


if __name__ == "__main__":
    main()
