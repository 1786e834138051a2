"""Compare: one face through AE, VAE, JPEG, WebP, AVIF, HEIC and JPEG XL, every file within one byte budget."""

import streamlit as st

from facecomp.app import cache, frame, widgets
from facecomp.spec import COMPARE_BUDGETS, LATENT_LADDER

AUTOMATIC = "automatic"
# Everything on the first screen of a 1280x720 projector: the menu starts folded away, the
# pictures share one row, and their numbers are a little smaller than the body text.
CARDS_CSS = """
[data-testid="stMainBlockContainer"] {padding-top: 3.6rem;}
.st-key-compare_source [role="radiogroup"] {gap: 0 0.9rem;}
.st-key-compare_source [role="radiogroup"] p {font-size: 0.9rem;}
.st-key-compare_cards [data-testid="stMarkdownContainer"] p {font-size: 0.8rem; line-height: 1.35;}
.st-key-compare_cards h3 {font-size: 1.05rem; padding: 0 0 0.2rem 0;}
.st-key-compare_cards [data-testid="stPopover"] button {min-height: 2rem; padding: 0.1rem 0.5rem;}
"""


frame.page_setup("Compare", sidebar="collapsed")
st.html(f"<style>{CARDS_CSS}</style>")
models, key = cache.models_or_stop()

source_col, photo_col, budget_col, latent_col, toggle_col = st.columns([3.6, 2.4, 3.1, 1.5, 1.9], gap="small")
source = widgets.photo_source("compare", where=(source_col, photo_col))
with budget_col:
    budget = st.select_slider(
        "Byte budget for every file",
        options=COMPARE_BUDGETS,
        value=256,
        format_func=frame.budget_label,
        key="compare_budget",
        help="Each codec makes its best file of at most this many bytes. The raw crop is 49,152 bytes.",
    )
with latent_col:
    latent = st.selectbox(
        "Latent size",
        (AUTOMATIC, *LATENT_LADDER),
        key="compare_latent",
        help="Automatic: the budget chooses the latent size, the quantiser and the detail layer of AE and VAE.",
    )
with toggle_col:
    heatmap = st.toggle("Error heat map", key="compare_heatmap", help="Bright = large error")
    sharp = cache.loaded_refiner(key) is not None and st.toggle(
        "Sharp AE, VAE",
        key="compare_sharp",
        help="The same AE and VAE files, decoded for realism: a refiner trained against a critic adds the fine "
        "detail real faces have, at a cost in PSNR. Off: the MSE decoding, the closest to the face in PSNR.",
    )
if source is None:
    st.info("Choose a photo to start: upload one, take one with the camera, or pick a built-in photo.")
    st.stop()
# In page order: the face picker (several faces) or warning (none), the pictures, then the
# photo with its faces folded away, and the caption.
picker, cards, below = st.container(), st.container(key="compare_cards"), st.container()
with picker:
    crop_png = widgets.pick_crop(
        source.data, "compare", photo_width=960, photo_box=below.expander("Photo and faces found")
    )
if crop_png is None:
    st.stop()

chosen_latent = None if latent == AUTOMATIC else int(latent)
with cards:
    with widgets.waiting_line() as on_wait:
        results = cache.comparison_results(models, key, crop_png, budget, latent=chosen_latent, on_wait=on_wait)
    if sharp:
        results = cache.sharp_results(models, key, crop_png, budget, chosen_latent)
    for col, res in zip(st.columns(len(results), gap="small"), results, strict=True):
        with col:
            heat = cache.heat_map_png(crop_png, res.png) if heatmap and res.name != "Original" else None
            frame.result_card(res, f"compare_{res.name}", heat)
how = "the budget picks latent size, quantiser and detail layer" if latent == AUTOMATIC else f"latent size {latent}"
below.caption(
    f"{source.label}: every file at most {frame.budget_label(budget)} (the raw crop is 49,152 bytes). "
    f"AE and VAE: {how}. JPEG, WebP, AVIF, HEIC and JPEG XL: the highest quality that fits; "
    "a codec that cannot fit shows its smallest file in red with the bytes it needs. "
    "Identity: dlib's face descriptor distance to the original, below 0.6 counts as the same person."
    + (
        " Sharp: the same AE and VAE files decoded for realism; fine detail is the picture's share of fine "
        "detail over real faces' (1 = as much as a real face)."
        if sharp
        else ""
    )
)
