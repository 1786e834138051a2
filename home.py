"""FaceComp home (the first page; app.py starts the server): what it does, a live example, links, and
which weights are loaded."""

import streamlit as st

from facecomp import demo, ui
from facecomp.weights import default_weights_dir

ui.page_setup("Home")
models, cards = ui.models_or_stop()
key = ui.weights_key()

st.title("FaceComp")
st.markdown(
    "FaceComp squeezes a 128×128 colour face into **32 bytes to 2 KB**: a neural encoder turns it into a short "
    "list of numbers (the smallest files), and a detail layer on top codes what those miss, both quantised "
    "and entropy-coded into a real file.  \n"
    "It compares a plain **autoencoder (AE)** with a **variational autoencoder (VAE)** on the same network, "
    "and both against **JPEG, WebP, AVIF, HEIC and JPEG XL** squeezed into the same number of bytes.  \n"
    "The VAE's smooth latent space also lets you **morph and edit faces** by moving sliders."
)

BLURBS = {
    "Compare": "your photo against JPEG, WebP, AVIF, HEIC and JPEG XL",
    "Latent explorer": "named sliders, morphs, AE vs VAE random faces",
    "Benchmarks": "rate–distortion charts",
    "How it works": "the ideas, for a talk",
}
st.subheader(f"Live example: {ui.HOME_EXAMPLE}, at most {ui.HOME_BUDGET} bytes a face")
*face_cols, links = st.columns([1, 1, 1, 1], gap="medium")
crop_png, results = ui.home_example(key)
for col, res in zip(face_cols, results, strict=True):
    with col:
        ui.result_card(res, crop_png, heatmap=False, key=f"home_{res.name}")
with links:
    st.markdown("### Explore")
    for path, label, icon in ui.NAV[1:]:
        st.page_link(path, label=f"**{label}**", icon=icon)
        st.caption(BLURBS[label])

st.subheader("Loaded weights")
st.markdown(demo.markdown_table(demo.card_rows(cards)))
st.caption(f"From `{default_weights_dir()}` (set FACECOMP_WEIGHTS_DIR to use others). SHA-256 verified on load.")
