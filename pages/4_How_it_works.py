"""How it works: a short, talk-ready tour of the models, the bytes and the results."""

import streamlit as st

from facecomp import comparison
from facecomp.app import cache, frame
from facecomp.latent import explorer
from facecomp.measure import results_doc, tables
from facecomp.spec import COMPARE_BUDGETS, LATENT_LADDER, MODEL_KINDS

frame.page_setup("How it works")
st.title("How it works")
evaluation = tables.read_evaluation() or {}
records = evaluation.get("records")

PIPELINE = """
digraph {
  rankdir=TB; ranksep=0.25; nodesep=0.3; bgcolor="transparent";
  node [shape=box, style="rounded,filled", fillcolor="#e8f0fe", fontname="Helvetica", fontsize=18, margin="0.2,0.12"];
  edge [penwidth=2];
  img [label="face\\n128×128 RGB", fillcolor="#fff3e0"];
  enc [label="encoder\\n512 numbers"];
  base [label="base layer\\nfirst k numbers\\n~20–110 bytes", fillcolor="#e6f4ea"];
  xb [label="base picture"];
  detail [label="detail layer\\nwhat the base\\nmissed", fillcolor="#e6f4ea"];
  file [label=".fcz file", shape=note, fillcolor="#fce8e6"];
  budget [label="byte\\nbudget", shape=cds, fillcolor="#fef7e0"];
  img -> enc -> base -> xb -> detail -> file;
  budget -> base [style=dotted]; budget -> detail [style=dotted];
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

arch, size, vae, perception, stream, results = st.tabs(
    ["Architecture", "Latent size = bytes", "AE vs VAE", "Sharp or close", "The bitstream", "Results vs the study"]
)
# The realism table's rows this tab shows: the pictures a visitor meets most.
PERCEPTION_SETS = ("prior samples", "fitted samples", "reconstruction 512", "file <= 64 B", "file <= 256 B")


def perception_tab() -> None:
    """One file decoded both ways, the measured trade-off, and the AE-versus-VAE lesson, sharp."""
    st.markdown(
        "An MSE decoder answers each code with the **average** of every face it could stand for: the closest "
        "picture in PSNR, and a blur, since averaged pores and hair strands cancel out. A decoder can instead "
        "answer with **one** face that could have made the code: realistic detail, at a cost in PSNR. "
        "Blau & Michaeli (CVPR 2018) proved the trade-off: at a given rate, no decoder is both the closest in "
        "distortion and indistinguishable from real pictures. The file does not choose; the decoder does. "
        "The sharp decoding is a refiner, trained against a critic, run on the MSE decoding's picture."
    )
    models, key = cache.models_or_stop()
    report = cache.realism_report(key)
    if rows := results_doc.realism_rows(report, PERCEPTION_SETS):
        st.markdown("#### Measured on validation faces")
        st.dataframe(rows, hide_index=True)
        st.caption(f"{results_doc.REALISM_WORDS} {results_doc.realism_floor(report)} Every set on the Benchmarks page.")
    if cache.loaded_refiner(key) is None:
        st.info("No sharp decoding in the weights folder yet: `python -m facecomp train-sharp` trains one.")
        return
    st.markdown("#### One file, decoded both ways")
    photo_col, budget_col = st.columns([1, 2])
    name = photo_col.selectbox("Built-in photo", list(comparison.BUILTIN_PHOTOS), index=1, key="rdp_photo")
    budget = budget_col.select_slider(
        "Byte budget", [b for b in COMPARE_BUDGETS if b <= 1024], 64, format_func=frame.budget_label, key="rdp_budget"
    )
    crop_png = cache.kept_photo(comparison.builtin_photo_bytes(name)).crop_png(0)
    mse = cache.comparison_results(models, key, crop_png, budget, classic=())
    shown = comparison.side_by_side(mse, cache.sharp_results(models, key, crop_png, budget, classic=()))
    for col, res in zip(st.columns(len(shown), gap="small"), shown, strict=True):
        with col:
            frame.result_card(res, f"rdp_{res.name}")
    st.caption(
        "The same .fcz file under each model, decoded for PSNR (left) and for realism (right). Fine detail: "
        "the picture's share of fine detail over real faces' (1 = as much as a real face)."
    )
    st.markdown("#### The lesson still holds: random codes from N(0, I), decoded sharp")
    for kind, col in zip(MODEL_KINDS, st.columns(len(MODEL_KINDS), gap="large")):
        with col:
            frame.picture(cache.sample_grid_png(models, key, kind, "prior", 1.0, 0, 8, 4, True))
            told = results_doc.told_apart(report, f"{kind} prior samples", "sharp")
            st.caption(f"**{kind.upper()}**, sharp decoding" + (f" · told from real faces {told}" if told else ""))
    st.markdown(
        "Detail cannot make a face out of a code that stands for none: the AE's prior samples stay what they "
        "were, now with texture. The VAE's N(0, I) is a map of faces, and its samples gain the detail real faces have."
    )


with arch:
    diagram, words = st.columns([2, 3], gap="large")
    diagram.graphviz_chart(PIPELINE, width="content")
    words.markdown(
        "- **One trunk, two models**: the AE and the VAE share the same convolutional encoder and decoder, "
        "so the comparison is fair.\n"
        "- **The base layer is the code**: the first *k* of 512 numbers (16 … 512; training keeps a random "
        "*prefix*, so **one model serves every size**), each rounded to a step the decoder can afford and "
        "entropy-coded. It is the whole file up to about 110 bytes, and the explorer's latent space.\n"
        "- **The detail layer codes what the base missed**: the base picture is known to both sides, so "
        "a second, spatial code (8×8 positions) only pays for the difference; the base code also predicts "
        "its statistics, so no byte is spent twice. It carries every file above ~110 bytes.\n"
        "- **The byte budget picks**: for a budget of *N* bytes every latent size with its finest fitting "
        "step, and the highest detail quality that fits, are tried; the file that decodes closest to the face "
        "wins.\n"
        "- **Where the bytes go**: 8 bytes of header and checksum (11 with a detail layer); at 64 bytes "
        "the rest is one base code, long (128–512 numbers) but coarsely rounded; from 256 bytes up, about "
        "70 bytes are the base (128 numbers) and the rest is detail."
    )
with size:
    st.markdown(
        "A latent size *k* is *k* numbers. Stored as float32 that is **4·k bytes**; "
        "quantised with a step matched to how much the decoder cares about each number, and entropy-coded, "
        "it is far less."
    )
    st.dataframe(tables.bytes_table(records, LATENT_LADDER), hide_index=True)
    if evaluation:
        st.caption(
            "At quality 0, their smallest setting, 128×128 faces still average "
            f"{tables.smallest_classic_files(evaluation)} bytes."
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
    models, key = cache.models_or_stop()
    fd = {kind: row["fd_dlib"] for kind, row in cache.latent_space_report(key).get("models", {}).items()}
    for kind, col in zip(MODEL_KINDS, st.columns(len(MODEL_KINDS), gap="large")):
        with col:
            for source, words in explorer.SAMPLE_SOURCE_WORDS.items():
                frame.picture(cache.sample_grid_png(models, key, kind, source, 1.0, 0, 8, 4))
                score = f" · FD-dlib {fd[kind][source]:.3f}" if kind in fd else ""
                st.caption(f"**{kind.upper()}**: {words}{score}")
    st.markdown(
        "The AE's codes of real faces sit wherever training put them, so codes from N(0, I) decode to "
        "something no face looks like; a Gaussian fitted to its codes gives faces back. The VAE's KL term "
        "made N(0, I) itself the map of faces. FD-dlib compares face-recognition descriptors of 2,000 "
        "decoded samples with those of 2,000 real faces: lower is more face-like."
    )
with perception:
    perception_tab()
with stream:
    st.markdown(
        "| bytes | field |\n|---|---|\n| 2 | magic `FZ` |\n| 1 | version · model · latent size |\n"
        "| 2 | hash of the weights that made it |\n| 1 | quantiser step · detail flag |\n"
        "| 3 | detail quality and the detail weights' hash (detail files only) |\n"
        "| n | ANS-coded base code, then the detail layer (constriction) |\n"
        "| 2 | CRC-16 checksum |"
    )
    st.markdown(
        "- Each number is rounded to a step that **follows the decoder's sensitivity**; its probability comes "
        "from a Gaussian fitted on training codes.\n"
        "- The detail layer's probabilities come from its hyperprior, computed as an **integer network**, so "
        "every CPU rebuilds exactly the tables the encoder used.\n"
        "- **Deterministic**: integer entropy decoding, then the decoder in float64 on the CPU: the same file "
        "gave the same pixels on an AMD and an Intel CPU (in float32 a few pixels differed by one level). "
        "A damaged file is refused, never shown as garbage."
    )
with results:
    st.markdown(
        "A public study called its models *compression* but never wrote a byte: a grey AE with **4,096 floats** "
        "and an MLP VAE that reached **10.4 dB**. We code colour faces into real files:"
    )
    st.dataframe(tables.study_comparison(records), hide_index=True)
    if not records:
        st.caption("Our rows appear once weights/evaluation.json exists.")
    st.page_link("pages/3_Benchmarks.py", label="All the charts on the Benchmarks page", icon=":material/monitoring:")
