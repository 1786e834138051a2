"""Benchmarks: quality against bytes under a byte budget, the budget table, the base layer against
latent size (noise, histograms), the latent space and training curves. Layout only: figures in charts."""

import streamlit as st

from facecomp.app import cache, frame
from facecomp.measure import charts, results_doc, tables
from facecomp.spec import LATENT_LADDER, MODEL_KINDS
from facecomp.weights import WeightsError, load_card, measured_weights

frame.page_setup("Benchmarks")
st.title("Benchmarks")

evaluation = tables.read_evaluation()
records = evaluation.get("records") if evaluation else None
cards, current = {}, {}
for kind in MODEL_KINDS:
    try:
        cards[kind], current[kind] = load_card(kind), measured_weights(kind)
    except WeightsError:
        pass

if not evaluation:
    st.info(
        f"No evaluation yet: `{tables.evaluation_path()}` is missing. "
        "Create it with `python -m facecomp evaluate DIR --json weights/evaluation.json`."
    )
else:
    if stale := tables.unmeasured_kinds(evaluation, current):
        st.warning(
            f"These numbers were not measured with the {' and '.join(k.upper() for k in stale)} weights "
            "in this app's weights folder (their SHA-256 differs from the evaluation's, or it names none). "
            "Measure them with `python -m facecomp evaluate DIR --json weights/evaluation.json` "
            "(`--models KIND --update` for one model)."
        )
    st.subheader("Quality against bytes, every file held to its budget")
    if evaluation.get("budget_table"):
        st.plotly_chart(charts.budget_curves(evaluation), theme=None, key="budget_curves")
        smallest = tables.smallest_classic_note(evaluation)
        st.caption(
            f"Measured on {evaluation.get('codec_faces', 'the')} held-out faces; hover for the numbers. "
            "Thick lines: every file at most the bytes on the x axis (AE and VAE pick latent size, quantiser "
            "and detail layer per face; the classic codecs their highest quality that fits), means over the "
            "faces whose file fits. Hollow markers: fewer than half the faces fit. "
            + (f"No marker: no file fits (median smallest files: {smallest} bytes). " if smallest else "")
            + "Thin dotted lines: each codec at fixed settings, at their mean bytes (AE and VAE: latent 128 "
            "plus the detail layer at rising quality; classic codecs: quality 0 to 90). Identity kept: dlib "
            "distance below 0.6 between a face and its decoding. Click a legend entry to hide a codec."
        )
        st.table(tables.budget_styler(evaluation))
        st.caption(
            "Each cell: mean PSNR in dB · identity kept · faces whose file fits / faces. Green: the best PSNR "
            "among codecs that fit at least half the faces; grey: fewer than half fit."
        )
    else:
        st.info(
            "This evaluation has no budget table yet: re-run "
            "`python -m facecomp evaluate DIR --json weights/evaluation.json` to measure every codec at "
            "32 to 2,048 bytes."
        )

if records:
    st.subheader("Base layer: quality against latent size")
    metric = st.segmented_control("Quality measure", ["psnr", "ssim"], default="psnr", format_func=str.upper)
    metric = metric or "psnr"
    left, right = st.columns(2)
    left.plotly_chart(charts.quality_vs_latent(records, metric), theme=None, key="latent")
    right.plotly_chart(charts.noise_robustness(records), theme=None, key="noise")

    st.subheader("Per-face distributions (the study's histograms)")
    c1, c2, _ = st.columns([1, 2, 2])
    model = c1.radio("Model", list(MODEL_KINDS), format_func=str.upper, horizontal=True, key="hist_model")
    sizes = sorted({r["latent"] for r in records if r["model"] == model}) or list(LATENT_LADDER)
    latent = c2.select_slider("Latent size", sizes, value=256 if 256 in sizes else sizes[-1], key="hist_latent")
    for col, name in zip(st.columns(3), ("mse", "psnr", "ssim"), strict=True):
        col.plotly_chart(charts.histogram(records, model, latent, name), theme=None, key=f"hist_{name}")

    with st.expander("All numbers per model and latent size (base layer only)"):
        st.dataframe(tables.summary_rows(records), hide_index=True)
        st.caption(
            "PSNR and SSIM of the float code and of the real .fcz file at the default quantiser, and each "
            "classic codec at the highest quality that fits the .fcz file's bytes (faces that could not fit)."
        )
elif evaluation:
    st.info("This evaluation has no per-latent records, so no base-layer charts.")

st.subheader("The latent space: random faces and named sliders")
latent_report = cache.latent_space_report(cache.weights_key())
if latent_report:
    st.dataframe(tables.sampler_rows(latent_report), hide_index=True)
    st.caption(
        f"FD-dlib: Fréchet distance between dlib face descriptors of {latent_report['fd_faces']:,} decoded samples "
        f"and {latent_report['fd_faces']:,} validation faces (two halves of the real faces: "
        f"{latent_report['real_halves_fd']:.3f}). Identity kept: dlib distance below 0.6 between a validation "
        f"face and its reconstruction ({latent_report['identity_faces']} faces)."
    )
    if latent_report.get("sweep"):
        st.markdown("**KL-weight sweep** (fine-tunes of the same VAE; PSNR on the validation split)")
        st.dataframe(tables.sweep_rows(latent_report), hide_index=True)
    if latent_report.get("edits"):
        st.markdown("**Named sliders on held-out labelled faces**")
        st.dataframe(tables.edit_rows(latent_report), hide_index=True)
        st.caption(
            "Flips: faces moved 2σ along the slider towards the other side, decoded, re-encoded and classified "
            "again by the VAE's classifier; as a check, also by the AE's own encoder and classifier, which the "
            "slider was not fitted through. Person kept: dlib calls the ±1σ edit the same person as the unedited "
            "decoding. A slider exists when its classifier reaches 85% balanced accuracy on held-out faces, and "
            "is shown by default when its edits reach 70% flips and 80% kept."
        )
else:
    st.info("No latent-space report yet: create it with `python -m facecomp latent-space`.")

st.subheader("Realism: the MSE and the sharp decoding")
realism = cache.realism_report(cache.weights_key())
if realism:
    st.dataframe(results_doc.realism_rows(realism), hide_index=True)
    st.caption(f"{results_doc.REALISM_WORDS} {results_doc.realism_floor(realism)}")
    if realism.get("sharp_edits"):
        st.markdown("**Named sliders on the sharp decoding** (the same edits, every picture decoded sharp)")
        st.dataframe(tables.edit_rows({"edits": realism["sharp_edits"]}, placement=False), hide_index=True)
else:
    st.info(
        "No realism report yet: create it with `python -m facecomp realism data/cache --json weights/realism.json`."
    )

st.subheader("Training")
if cards:
    st.plotly_chart(charts.training_curves(cards), theme=None, key="training")
    st.caption(tables.training_note(cards))
else:
    st.info("No model cards found, so no training curves.")
