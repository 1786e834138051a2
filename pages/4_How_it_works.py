"""How it works: a short, talk-ready tour of the models, the bytes and the results."""

import streamlit as st

from facecomp import charts, explore, page, ui
from facecomp.model import LATENT_LADDER, MODEL_KINDS

ui.page_setup("How it works")
st.title("How it works")
evaluation = charts.read_evaluation() or {}
records = evaluation.get("records")

PIPELINE = """
digraph {
  rankdir=TB; ranksep=0.25; bgcolor="transparent";
  node [shape=box, style="rounded,filled", fillcolor="#e8f0fe", fontname="Helvetica", fontsize=18, margin="0.2,0.12"];
  edge [penwidth=2];
  img [label="face\\n128×128 RGB", fillcolor="#fff3e0"];
  enc [label="encoder\\n5 conv stages\\n128 → 4 px"];
  z [label="code\\n512 numbers\\nkeep the first k", fillcolor="#e6f4ea"];
  file [label=".fcz file\\nquantise + ANS", shape=note, fillcolor="#fce8e6"];
  dec [label="decoder\\nmirror image\\n4 → 128 px"];
  out [label="reconstruction", fillcolor="#fff3e0"];
  img -> enc -> z -> file -> dec -> out;
}
"""

VAE = """
digraph {
  rankdir=LR; bgcolor="transparent";
  node [shape=box, style="rounded,filled", fillcolor="#e8f0fe", fontname="Helvetica", fontsize=18, margin="0.2,0.12"];
  edge [penwidth=2];
  enc [label="encoder"];
  mu [label="μ (mean)", fillcolor="#e6f4ea"];
  sd [label="σ (spread)", fillcolor="#e6f4ea"];
  eps [label="ε ~ N(0, I)", shape=ellipse, fillcolor="#fce8e6"];
  z [label="z = μ + σ·ε", fillcolor="#e6f4ea"];
  dec [label="decoder"];
  enc -> mu -> z; enc -> sd -> z; eps -> z; z -> dec;
}
"""

arch, size, vae, stream, results = st.tabs(
    ["Architecture", "Latent size = bytes", "AE vs VAE", "The bitstream", "Results vs the study"]
)
with arch:
    diagram, words = st.columns([2, 3], gap="large")
    diagram.graphviz_chart(PIPELINE, width="content")
    words.markdown(
        "- **One trunk, two models**: the AE and the VAE share the same convolutional encoder and decoder, "
        "so the comparison is fair.\n"
        "- **Nested latent**: training keeps a random *prefix* of the code (16 … 512 numbers). "
        "The first numbers learn the most important things, so **one model serves every size**.\n"
        "- **Small and fast**: 24 → 256 channels, a few MB of weights; "
        "one face decodes in milliseconds on a laptop CPU."
    )
with size:
    st.markdown(
        "A latent size *k* is *k* numbers. Stored as float32 that is **4·k bytes**; "
        "quantised with a step matched to how much the decoder cares about each number, and entropy-coded, "
        "it is far less."
    )
    st.dataframe(charts.bytes_table(records, LATENT_LADDER), hide_index=True)
    if evaluation:
        st.caption(
            "At quality 0, their smallest setting, 128×128 faces still average "
            f"{charts.smallest_classic_files(evaluation)} bytes."
        )
with vae:
    st.graphviz_chart(VAE, width="stretch")
    st.markdown("**Reparameterisation trick**: sample through a formula, so gradients flow through μ and σ.")
    st.latex(
        r"\mathcal{L} = \underbrace{\lVert x - \hat x \rVert^2}_{\text{reconstruction}}"
        r" + \beta\,\underbrace{\mathrm{KL}\big(\mathcal N(\mu,\sigma^2)\,\Vert\,\mathcal N(0, I)\big)}"
        r"_{\text{keep codes near the prior}}"
    )
    blur, smooth = st.columns(2)
    blur.markdown(
        "#### Why the VAE is blurrier\nDuring training its code is *noisy*; the decoder learns to answer with "
        "the **average** of the faces that code could mean, and averages are blurry."
    )
    smooth.markdown(
        "#### Why its space is smoother\nThe KL term packs every face into one ball around 0 with no gaps, "
        "so **random codes and in-between codes decode to faces**: sampling and morphing work."
    )
    st.markdown("#### The lesson in pictures: decode random codes")
    key = ui.models_or_stop().key
    fd = {kind: row["fd_dlib"] for kind, row in ui.latent_space_report(key).get("models", {}).items()}
    for kind, col in zip(MODEL_KINDS, st.columns(len(MODEL_KINDS), gap="large")):
        with col:
            for source, words in explore.SAMPLE_SOURCE_WORDS.items():
                page.picture(ui.samples(kind, source, 1.0, 0, 8, 4, key))
                score = f" · FD-dlib {fd[kind][source]:.3f}" if kind in fd else ""
                st.caption(f"**{kind.upper()}**: {words}{score}")
    st.markdown(
        "The AE's codes of real faces sit wherever training put them, so codes from N(0, I) decode to "
        "something no face looks like; a Gaussian fitted to its codes gives faces back. The VAE's KL term "
        "made N(0, I) itself the map of faces. FD-dlib compares face-recognition descriptors of 2,000 "
        "decoded samples with those of 2,000 real faces: lower is more face-like."
    )
with stream:
    st.markdown(
        "| bytes | field |\n|---|---|\n| 2 | magic `FZ` |\n| 1 | version · model · latent size |\n"
        "| 2 | hash of the weights that made it |\n| 1 | quantiser step |\n| n | ANS-coded latent (constriction) |\n"
        "| 2 | CRC-16 checksum |"
    )
    st.markdown(
        "- Each number is rounded to a step that **follows the decoder's sensitivity**; its probability comes "
        "from a Gaussian fitted on training codes.\n"
        "- **Deterministic**: integer entropy decoding, then the decoder in float64 on the CPU: the same file "
        "gave the same pixels on an AMD and an Intel CPU (in float32 a few pixels differed by one level). "
        "A damaged file is refused, never shown as garbage."
    )
with results:
    st.markdown(
        "A public study called its models *compression* but never wrote a byte: a grey AE with **4,096 floats** "
        "and an MLP VAE that reached **10.4 dB**. We code colour faces into real files:"
    )
    st.dataframe(charts.study_comparison(records), hide_index=True)
    if not records:
        st.caption("Our rows appear once weights/evaluation.json exists.")
    st.page_link("pages/3_Benchmarks.py", label="All the charts on the Benchmarks page", icon=":material/monitoring:")
