"""Latent explorer: move a face along the VAE's main directions, morph two faces, sample new ones."""

import numpy as np
import streamlit as st
import torch

from facecomp import explore, ui
from facecomp.visual import png_bytes, upscale

ui.page_setup("Latent explorer")
models, cards = ui.models_or_stop()
key = ui.weights_key()
vae = models["vae"]
N_SLIDERS = 8
SIGMA = explore.SLIDER_RANGE


def face_code(source: ui.Source, prefix: str) -> tuple[np.ndarray | None, bytes | None]:
    """The VAE code of a source, and its crop as PNG when it is a photo."""
    if source.seed is not None:
        return explore.prior_code(vae, source.seed).numpy(), None
    crop_png = ui.pick_crop(source.data, prefix, show_photo=None, photo_width=600)
    return (None, None) if crop_png is None else (ui.code_of(crop_png, key), crop_png)


def face_png(code: np.ndarray) -> bytes:
    return ui.decoded_png(code.astype(np.float32).tobytes(), key)


dirs = explore.directions(vae, N_SLIDERS)
age = explore.age_direction(vae)
slider_keys = [f"explore_dir{i}" for i in range(len(dirs))] + (["explore_age"] if age else [])


def reset() -> None:
    for k in slider_keys:
        st.session_state[k] = 0.0


@st.fragment
def editor(code: np.ndarray, crop_png: bytes | None, label: str) -> None:
    """Start face, edited face and the sliders; a slider move reruns only this fragment."""
    ui.inference_threads()
    start_col, edited_col, slider_col = st.columns([1, 1, 2], gap="medium")
    with slider_col:
        st.markdown("**Main directions of the VAE latent space** (±3 standard deviations)")
        cols = st.columns(2)
        sigmas = [
            cols[i % 2].slider(d.name, -SIGMA, SIGMA, 0.0, 0.1, key=slider_keys[i], format="%.1f σ")
            for i, d in enumerate(dirs)
        ]
        if age:
            sigmas.append(st.slider(age.name, -SIGMA, SIGMA, 0.0, 0.1, key="explore_age", format="%.1f σ"))
            st.caption(
                "⚠️ The age direction was learned from UTKFace's age labels, so it carries that data's biases: "
                "it can also shift skin tone, gender cues or photo style."
            )
        else:
            st.caption("No age direction in these weights yet (it is fitted from UTKFace's age labels).")
        if dirs and dirs[0].note:
            st.caption(f"Principal directions not fitted yet ({dirs[0].note}).")
        st.button("Reset sliders", on_click=reset)
    moved = explore.move(torch.from_numpy(code), dirs + ([age] if age else []), sigmas)
    with start_col:
        st.markdown("### Start")
        st.image(ui.upscaled(crop_png) if crop_png is not None else face_png(code), width="stretch")
        st.caption(label)
    with edited_col:
        st.markdown("### Edited")
        st.image(png_bytes(upscale(explore.decode(vae, moved))), width="stretch")
        st.caption("the VAE's decoding, moved by the sliders")


@st.fragment
def morph(code: np.ndarray, label: str) -> None:
    """Spherical interpolation from the start face to a second face, and its GIF."""
    ui.inference_threads()
    pick, a_col, t_col, b_col = st.columns(4, gap="medium")
    with pick:
        other = ui.photo_source("morph", allow_random=True, default=3, seed=42)
        other_code = None if other is None else face_code(other, "morph")[0]
        if other_code is None:
            return
        t = st.slider("Morph position", 0.0, 1.0, 0.5, 0.05, key="morph_t")
        za, zb = torch.from_numpy(code).float(), torch.from_numpy(other_code).float()
        gif = ui.morph_gif(za.numpy().tobytes(), zb.numpy().tobytes(), 16, key)
        st.download_button("Download the morph (GIF)", gif, "facecomp_morph.gif", "image/gif", on_click="ignore")
    a_col.image(face_png(code), caption=f"A: {label}", width="stretch")
    t_col.image(
        png_bytes(upscale(explore.decode(vae, explore.slerp(za, zb, t)))), caption=f"t = {t:.2f}", width="stretch"
    )
    b_col.image(face_png(other_code), caption=f"B: {other.label}", width="stretch")


@st.fragment
def samples() -> None:
    ui.inference_threads()
    seed_col, _ = st.columns([1, 3])
    seed = int(seed_col.number_input("Sample seed", 0, 1_000_000, 0, key="grid_seed"))
    st.image(ui.samples(seed, 12, 6, key), width="stretch", caption="12 codes drawn from N(0, I), decoded by the VAE")


st.title("Latent explorer (VAE)")
pick, photo = st.columns([1, 2], gap="large")
with pick:
    source = ui.photo_source("explore", allow_random=True, default=3)
with photo:
    code, crop_png = (None, None) if source is None else face_code(source, "explore")
if code is None:
    st.info("Choose a face to start: a random one from the prior, a built-in photo, an upload or the camera.")
    st.stop()
editor(code, crop_png, source.label)

st.divider()
st.header("Morph")
st.caption("From the start face to a second face along a great circle in latent space (spherical interpolation).")
morph(code, source.label)

st.divider()
st.header("Random faces from the prior")
samples()
