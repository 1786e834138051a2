"""The pages' frame and the face cards: Streamlit and Pillow only, no torch, so the first page
can draw from results kept on disk while torch is still being imported (first_page). The
cached computations the other pages need are in cache."""

from __future__ import annotations

from collections.abc import Callable

import streamlit as st
from PIL import Image

from ..result import Result
from ..spec import PIXELS

ICON = "🗜️"
NAV = (
    ("home.py", "Home", ":material/home:"),
    ("pages/1_Compare.py", "Compare", ":material/compare:"),
    ("pages/2_Latent_explorer.py", "Latent explorer", ":material/tune:"),
    ("pages/3_Benchmarks.py", "Benchmarks", ":material/monitoring:"),
    ("pages/4_How_it_works.py", "How it works", ":material/lightbulb:"),
)
FACE_KEY = "face_"  # containers whose key starts so hold a 128x128 face (see face_image)
_CSS = (
    '[data-testid="stMainBlockContainer"] {padding: 2.5rem 2rem 2rem 2rem; max-width: 100%;}'
    f' [class*="st-key-{FACE_KEY}"] img {{image-rendering: pixelated;}}'
)
RAW_BYTES = PIXELS * 3
_script_thread_setup: list[Callable[[], None]] = []  # see on_page_setup


def budget_label(n: int) -> str:
    """A byte budget as a visitor reads it: "256 bytes", "1.5 KB"."""
    return f"{n:,} bytes" if n < 1024 else f"{n / 1024:g} KB"


def on_page_setup(setup: Callable[[], None]) -> None:
    """Have page_setup call `setup` on every page's script thread from now on: server does so
    with its torch thread count once torch is imported. Home may draw before that (first_page),
    and this module never imports torch."""
    _script_thread_setup.append(setup)


def page_setup(title: str, sidebar: str = "auto") -> None:
    """Wide layout and the sidebar menu (our own links, so the home page reads "Home", not "app"),
    and what on_page_setup asked for (one torch thread for this script thread).

    sidebar "collapsed": the menu starts folded away (its arrow opens it), for pages whose
    pictures need the full width of a 1280-pixel projector.
    """
    for setup in _script_thread_setup:
        setup()
    st.set_page_config(page_title=f"FaceComp · {title}", page_icon=ICON, layout="wide", initial_sidebar_state=sidebar)
    # Slimmer page margins: on a projector every pixel goes to the faces.
    st.html(f"<style>{_CSS}</style>")
    with st.sidebar:
        st.markdown("## FaceComp")
        for path, label, icon in NAV:
            st.page_link(path, label=label, icon=icon)


def picture(image: Image.Image | bytes, caption: str | None = None) -> None:
    """A picture we made, as wide as its column and sent as PNG. Streamlit's default would send an
    RGB picture as JPEG: artefacts a codec demo must not add, and for PNG bytes a decode and a
    re-encode on every rerun (for the explorer's four sample grids, much of its page's rerun)."""
    st.image(image, caption=caption, width="stretch", output_format="PNG")


def face_image(image: Image.Image | bytes, key: str, caption: str | None = None) -> None:
    """A 128x128 face as wide as its column, every pixel a sharp square: the page sends the
    128-pixel PNG and the browser enlarges it (CSS pixelated), so the server never encodes a
    4x enlarged PNG (~12 ms a picture, eight per comparison and one per slider move)."""
    with st.container(key=f"{FACE_KEY}{key}"):
        picture(image, caption)


def result_card(res: Result, key: str, picture: bytes | None = None) -> None:
    """One column of the comparison: picture (default the result's own; Compare may pass its
    error heat map), then bytes, bpp, PSNR, SSIM, identity, how the file was made, and its
    downloads. Plain text, never st.metric: a narrow column must not cut a number off. A file
    over the budget keeps its picture and numbers, marked in red."""
    st.markdown(f"### {res.name}")
    face_image(picture or res.png, key)
    size = f"**{res.n_bytes:,} bytes**"
    if res.name == "Original":
        st.markdown(f"{size} PNG  \n{res.bpp:.2f} bpp  \nraw {RAW_BYTES:,} bytes")
        return
    lines = [f":red[{size}]" if res.over_budget else size, f"{res.bpp:.3f} bpp"]
    lines += [f"PSNR **{res.psnr:.2f}** dB", f"SSIM **{res.ssim:.3f}**"]
    if res.identity is not None:
        lines.append(res.identity_text if res.same_person else f":orange[{res.identity_text}]")
    if "detail_energy" in res.extra:
        lines.append(f"fine detail **{res.extra['detail_energy']:.2f}**× real faces'")
    lines.append(f":red[**{res.note}**]" if res.over_budget else res.note)
    st.markdown("  \n".join(lines))
    with st.popover("Files", icon=":material/download:"):
        if res.data is not None and res.file_name:
            suffix = res.file_name.rsplit(".", 1)[-1]
            st.download_button(
                f".{suffix}" if suffix == "fcz" else f"{suffix.upper()} file",
                res.data,
                res.file_name,
                "application/octet-stream",
                key=f"{key}_file",
                on_click="ignore",
                icon=":material/download:",
            )
        st.download_button(
            "PNG",
            res.png,
            res.png_name,
            "image/png",
            key=f"{key}_png",
            on_click="ignore",
            icon=":material/download:",
        )
