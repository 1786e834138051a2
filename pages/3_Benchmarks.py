"""Benchmarks: rate-distortion, quality against latent size, histograms, training curves, noise."""

import streamlit as st

from facecomp import charts, ui
from facecomp.model import LATENT_LADDER, MODEL_KINDS
from facecomp.weights import WeightsError, load_card

ui.page_setup("Benchmarks")
st.title("Benchmarks")

evaluation = charts.read_evaluation()
records = evaluation.get("records") if evaluation else None
cards = {}
for kind in MODEL_KINDS:
    try:
        cards[kind] = load_card(kind)
    except WeightsError:
        pass

if not records:
    st.info(
        f"No evaluation yet: `{charts.evaluation_path()}` is missing. "
        "Create it with `python -m facecomp evaluate DIR --json weights/evaluation.json`."
    )
else:
    st.caption(
        "Measured on held-out faces. Real bytes are the .fcz files' sizes; JPEG, WebP and AVIF are at the "
        "highest quality that fits the same bytes. Hover for the numbers."
    )
    metric = st.segmented_control("Quality measure", ["psnr", "ssim"], default="psnr", format_func=str.upper)
    metric = metric or "psnr"
    left, right = st.columns(2)
    left.plotly_chart(charts.rate_distortion(records, metric, evaluation.get("rate_distortion")), theme=None, key="rd")
    right.plotly_chart(charts.quality_vs_latent(records, metric), theme=None, key="latent")

    st.subheader("Per-face distributions (the study's histograms)")
    c1, c2, _ = st.columns([1, 2, 2])
    model = c1.radio("Model", list(MODEL_KINDS), format_func=str.upper, horizontal=True, key="hist_model")
    sizes = sorted({r["latent"] for r in records if r["model"] == model}) or list(LATENT_LADDER)
    latent = c2.select_slider("Latent size", sizes, value=256 if 256 in sizes else sizes[-1], key="hist_latent")
    for col, name in zip(st.columns(3), ("mse", "psnr", "ssim"), strict=True):
        col.plotly_chart(charts.histogram(records, model, latent, name), theme=None, key=f"hist_{name}")

    if evaluation.get("budgets"):
        st.subheader("Best quality when every file must fit")
        st.dataframe(charts.budget_rows(evaluation), hide_index=True)
        st.caption(
            "For comparison, at quality 0, their smallest setting, the classic codecs' files of the same faces "
            f"average {charts.smallest_classic_files(evaluation)} bytes."
        )

    left, right = st.columns(2)
    right.plotly_chart(charts.noise_robustness(records), theme=None, key="noise")
    with left:
        st.subheader("All numbers")
        st.dataframe(charts.summary_rows(records), hide_index=True)

st.subheader("The latent space: random faces and named sliders")
latent_report = ui.latent_space_report(ui.weights_key())
if latent_report:
    st.dataframe(charts.sampler_rows(latent_report), hide_index=True)
    st.caption(
        f"FD-dlib: Fréchet distance between dlib face descriptors of {latent_report['fd_faces']:,} decoded samples "
        f"and {latent_report['fd_faces']:,} validation faces (two halves of the real faces: "
        f"{latent_report['real_halves_fd']:.3f}). Identity kept: dlib distance below 0.6 between a validation "
        f"face and its reconstruction ({latent_report['identity_faces']} faces)."
    )
    if latent_report.get("sweep"):
        st.markdown("**KL-weight sweep** (fine-tunes of the same VAE; PSNR on the validation split)")
        st.dataframe(charts.sweep_rows(latent_report), hide_index=True)
    if latent_report.get("edits"):
        st.markdown("**Named sliders on held-out labelled faces**")
        st.dataframe(charts.edit_rows(latent_report), hide_index=True)
        st.caption(
            "Flips: faces moved 2σ towards the other side, decoded, re-encoded and classified again. "
            "Person kept: dlib calls the ±1σ edit the same person as the unedited decoding. "
            "A slider is shown when its classifier reaches 85% balanced accuracy on held-out faces; "
            "the latent-space issue asks its edits for 70% flips and 80% kept."
        )
else:
    st.info("No latent-space report yet: create it with `python -m facecomp latent-space`.")

st.subheader("Training")
if cards:
    st.plotly_chart(charts.training_curves(cards), theme=None, key="training")
    st.caption(charts.training_note(cards))
else:
    st.info("No model cards found, so no training curves.")
