"""FaceComp home (the first page; app.py starts the server): what it does, a live example, links, and
which weights are loaded.

Drawn without torch when the example is kept on disk from an earlier start (facecomp.app.first_page):
the page is then ready while the server is still importing torch and loading the models."""

import streamlit as st

from facecomp.app import first_page, frame
from facecomp.weight_files import default_weights_dir

frame.page_setup("Home")
example = first_page.read(default_weights_dir())
if example is None:
    from facecomp.app.warm_up import home_example  # imports torch: computes the example, kept for the next start

    example = home_example()

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
st.subheader(f"Live example: {example.photo}, at most {example.budget} bytes a face")
*face_cols, links = st.columns([1, 1, 1, 1], gap="medium")
for col, res in zip(face_cols, example.results, strict=True):
    with col:
        frame.result_card(res, key=f"home_{res.name}")
with links:
    st.markdown("### Explore")
    for path, label, icon in frame.NAV[1:]:
        st.page_link(path, label=f"**{label}**", icon=icon)
        st.caption(BLURBS[label])

st.subheader("Loaded weights")
st.markdown(first_page.markdown_table(first_page.card_rows(example.cards)))
st.caption(f"From `{default_weights_dir()}` (set FACECOMP_WEIGHTS_DIR to use others). SHA-256 verified on load.")
first_page.home_drawn()
