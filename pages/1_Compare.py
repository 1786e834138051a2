"""Compare: one face through AE, VAE, JPEG, WebP, AVIF, HEIC and JPEG XL at the same number of bytes."""

import streamlit as st

from facecomp import ui
from facecomp.classic import CLASSIC_FORMATS, classic_name
from facecomp.model import LATENT_LADDER, MODEL_KINDS

ui.page_setup("Compare")
models, cards = ui.models_or_stop()
key = ui.weights_key()

st.title("Compare")
controls, photo_col, summary = st.columns([3, 3, 2], gap="large")
with controls:
    source = ui.photo_source("compare")
    latent = st.select_slider(
        "Latent size (numbers per face)", options=list(LATENT_LADDER), value=128, key="compare_latent"
    )
    heatmap = st.toggle("Error heat map", key="compare_heatmap", help="Bright = large error")
if source is None:
    st.info("Choose a photo to start: upload one, take one with the camera, or pick a built-in photo.")
    st.stop()
with photo_col:
    crop_png = ui.pick_crop(source.data, "compare", photo_width=800)
if crop_png is None:
    st.stop()

results = ui.compare(crop_png, latent, key)
budget = max(r.n_bytes for r in results if r.name in [kind.upper() for kind in MODEL_KINDS])
with summary:
    st.metric("Byte budget for every codec", f"{budget} bytes", help="The larger of the AE and VAE files")
    st.metric("Raw crop (128×128×3)", f"{128 * 128 * 3:,} bytes")
    names = [classic_name(fmt) for fmt in CLASSIC_FORMATS]
    st.caption(
        f"{source.label}. {', '.join(names[:-1])} and {names[-1]} run at the highest quality that fits the "
        "budget; one that cannot fit even at its lowest quality says how many bytes it needs."
    )
PER_ROW = 4  # two rows of four: pictures large enough for the back of a room
for start in range(0, len(results), PER_ROW):
    for col, res in zip(st.columns(PER_ROW, gap="large"), results[start : start + PER_ROW]):
        with col:
            ui.result_card(res, crop_png, heatmap, key=f"compare_{res.name}")
