"""Latent explorer: edit a face along named directions, morph two faces, and see AE versus VAE samples."""

import numpy as np
import streamlit as st

from facecomp.app import cache, frame, server, widgets
from facecomp.codec.format import CodecError
from facecomp.latent import explorer
from facecomp.spec import MODEL_KINDS

frame.page_setup("Latent explorer")
models, key = cache.models_or_stop()
vae = models["vae"].network
N_MAIN = 8
SIGMA = explorer.SLIDER_RANGE
BIAS_NOTE = (
    "⚠️ Named directions were learned from labels made by people: CelebA's attribute labels "
    "(celebrity photos, annotators' judgements) and UTKFace's ages (from its file names). They carry "
    "those data sets' biases: a slider can also shift skin tone, gender cues, age or photo style."
)


def face_code(source: widgets.Source, prefix: str) -> tuple[np.ndarray | None, bytes | None]:
    """The VAE code of a source, and its crop as PNG when it is a photo."""
    if source.seed is not None:
        return explorer.random_code(vae, source.seed, "prior").numpy(), None
    if source.fcz:
        try:
            return cache.fcz_code(models, key, source.data), None
        except CodecError as err:
            st.error(f"That .fcz file cannot be used here: {err}")
            return None, None
    crop_png = widgets.pick_crop(source.data, prefix, show_photo=None, photo_width=600)
    return (None, None) if crop_png is None else (cache.code_of(models, key, crop_png), crop_png)


def face_png(code: np.ndarray) -> bytes:
    return cache.decoded_png(models, key, code.astype(np.float32).tobytes(), sharp())


def sharp() -> bool:
    """Draw with the sharp decoding: the page's switch, on by default where the weights ship one."""
    return bool(st.session_state.get("explore_sharp", True)) and cache.loaded_refiner(key) is not None


def decoding_words() -> str:
    return "sharp decoding" if sharp() else "MSE decoding"


edits = cache.latent_space_report(key).get("edits")
shown, more = explorer.editor_directions(vae, edits, N_MAIN)
slider_keys = {d.name: f"explore_{d.name}" for d in shown + more}


def reset() -> None:
    for k in slider_keys.values():
        st.session_state[k] = 0.0


def sliders(dirs: list[explorer.Direction]) -> list[float]:
    cols = st.columns(2)
    return [
        cols[i % 2].slider(d.name, -SIGMA, SIGMA, 0.0, 0.1, key=slider_keys[d.name], format="%.1f σ", help=d.note)
        for i, d in enumerate(dirs)
    ]


@st.fragment
def editor(code: np.ndarray, crop_png: bytes | None, label: str) -> None:
    """Start face, edited face and the sliders; a slider move reruns only this fragment."""
    server.inference_threads()
    start_col, edited_col, slider_col = st.columns([1, 1, 2], gap="medium")
    with slider_col:
        st.markdown("**Move the face along named directions** (±3 standard deviations of real faces)")
        sigmas = sliders(shown)
        if more:
            with st.expander(f"More directions ({len(more)})"):
                st.caption(
                    "Named directions whose measured edits miss the bar (a 2σ move flips the attribute in 70% "
                    "of held-out faces and a 1σ move keeps the person in 80%; each slider's help gives its "
                    "numbers), then the main directions: the principal components of the VAE's codes of real faces."
                )
                sigmas += sliders(more)
        st.caption(BIAS_NOTE)
        st.button("Reset sliders", on_click=reset)
    moved = explorer.moved_code(code, shown + more, sigmas)
    with start_col:
        st.markdown("### Start")
        frame.face_image(crop_png if crop_png is not None else face_png(code), "start", caption=label)
    with edited_col:
        st.markdown("### Edited")
        frame.face_image(face_png(moved), "edited", caption=f"moved by the sliders ({decoding_words()})")


@st.fragment
def morph(code: np.ndarray, label: str) -> None:
    """Spherical interpolation from the start face to a second face, and its GIF."""
    server.inference_threads()
    pick, a_col, t_col, b_col = st.columns(4, gap="medium")
    with pick:
        other = widgets.photo_source("morph", allow_random=True, default=3, seed=42, allow_fcz=True)
        other_code = None if other is None else face_code(other, "morph")[0]
        if other_code is None:
            return
        t = st.slider("Morph position", 0.0, 1.0, 0.5, 0.05, key="morph_t")
        za, zb = code.astype(np.float32).tobytes(), other_code.astype(np.float32).tobytes()
        gif = cache.morph_gif(models, key, za, zb, 16, sharp())
        st.download_button("Download the morph (GIF)", gif, "facecomp_morph.gif", "image/gif", on_click="ignore")
    with a_col:
        frame.face_image(face_png(code), "morph_a", caption=f"A: {label}")
    with t_col:
        frame.face_image(face_png(explorer.morph_code(code, other_code, t)), "morph_t", caption=f"t = {t:.2f}")
    with b_col:
        frame.face_image(face_png(other_code), "morph_b", caption=f"B: {other.label}")


@st.fragment
def samples() -> None:
    """AE and VAE side by side, each sampled from the prior and from the fitted Gaussian."""
    server.inference_threads()
    seed_col, temp_col, _ = st.columns([1, 1, 2])
    seed = int(seed_col.number_input("Sample seed", 0, 1_000_000, 0, key="grid_seed"))
    temperature = temp_col.slider("Temperature", 0.3, 1.5, 1.0, 0.1, key="grid_temperature")
    columns = st.columns(len(MODEL_KINDS), gap="large")
    for kind, col in zip(MODEL_KINDS, columns):
        with col:
            st.markdown(f"### {kind.upper()}")
            for source, caption in explorer.SAMPLE_SOURCE_WORDS.items():
                frame.picture(cache.sample_grid_png(models, key, kind, source, temperature, seed, 8, 4, sharp()))
                st.caption(f"{kind.upper()}: {caption}")


title, switch = st.columns([3, 1], vertical_alignment="bottom")
title.title("Latent explorer (VAE)")
if cache.loaded_refiner(key) is not None:
    switch.toggle(
        "Sharp decoding",
        True,
        key="explore_sharp",
        help="On: every face is decoded for realism (a refiner trained against a critic adds the fine detail "
        "real faces have). Off: the MSE decoding, the average of every face the code could stand for, "
        "as the codec's PSNR numbers measure it. Same codes either way.",
    )
pick, photo = st.columns([1, 2], gap="large")
with pick:
    source = widgets.photo_source("explore", allow_random=True, default=0, allow_fcz=True)
with photo:
    code, crop_png = (None, None) if source is None else face_code(source, "explore")
if code is None:
    st.info(
        "Choose a face to start: a random one from the VAE's prior, a built-in photo, an upload "
        "(a photo, or a .fcz file made on Compare) or the camera."
    )
    st.stop()
editor(code, crop_png, source.label)

st.divider()
st.header("Morph")
st.caption("From the start face to a second face along a great circle in latent space (spherical interpolation).")
morph(code, source.label)

st.divider()
st.header("Random faces: AE versus VAE")
st.caption(
    "The VAE is trained so that its codes of real faces fill the prior N(0, I): random codes from the prior "
    "decode to faces. The AE's codes lie wherever training put them, so its prior samples are not faces; "
    "a Gaussian fitted to its codes of real faces (shipped in the weights) gives faces again. "
    "Temperature scales the spread of the codes."
)
samples()
