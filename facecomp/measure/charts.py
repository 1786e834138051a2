"""Plotly figures for the benchmark page, built from the evaluation JSON and the model cards.

No Streamlit here: the same figures can be written to HTML from a script.
"""

from __future__ import annotations

import itertools
import math

import plotly.graph_objects as go

from ..spec import MODEL_KINDS, codec_name
from .tables import STUDY, budget_codecs, epochs_before, half_fit, metric_value, model_records

MODEL_COLOURS = {"ae": "#1f77b4", "vae": "#d62728"}
CLASSIC_COLOURS = {"JPEG": "#7f7f7f", "WEBP": "#2ca02c", "AVIF": "#9467bd", "HEIF": "#ff7f0e", "JXL": "#8c564b"}
FONT = {"size": 17}  # readable from the back of a room


def _layout(fig: go.Figure, title: str, x: str, y: str, log_x: bool = False) -> go.Figure:
    fig.update_layout(
        template="plotly_white",
        title=title,
        xaxis_title=x,
        yaxis_title=y,
        font=FONT,
        hovermode="closest",
        legend={"orientation": "h", "yanchor": "top", "y": -0.25},
        margin={"t": 60, "b": 120},
    )
    if log_x:
        fig.update_xaxes(type="log")
    return fig


BUDGET_PANELS = (("psnr", "PSNR (dB)"), ("ssim", "SSIM"), ("identity", "identity kept (%)"))


def _codec_colour(codec: str) -> str:
    return MODEL_COLOURS.get(codec) or CLASSIC_COLOURS.get(codec, "#555")


def _style(codec: str) -> dict:
    """Name, colour, marker and line width of a codec's traces (models bold, circles; formats diamonds)."""
    model = codec in MODEL_KINDS
    return {
        "name": codec_name(codec),
        "colour": _codec_colour(codec),
        "shape": "circle" if model else "diamond",
        "width": 3 if model else 2,
        "size": 10 if model else 9,
        "what": "detail layer quality" if model else "quality",
    }


def _legend_trace(codec: str, style: dict) -> go.Scatter:
    """The legend entry: a filled marker whatever the first budget's marker is."""
    return go.Scatter(
        x=[None],
        y=[None],
        mode="lines+markers",
        name=style["name"],
        legendgroup=codec,
        line={"color": style["colour"], "width": style["width"]},
        marker={"size": style["size"], "symbol": style["shape"], "color": style["colour"]},
    )


def _budget_trace(codec: str, style: dict, rows: list[dict], metric: str, label: str) -> go.Scatter:
    """Every file held to a byte budget: hollow markers where fewer than half the faces fit."""
    shape, name = style["shape"], style["name"]
    return go.Scatter(
        x=[r["max_bytes"] for r in rows],
        y=[metric_value(r, metric) for r in rows],
        customdata=[[r.get("fitted", 0), r.get("faces", 0), r.get("bytes") or float("nan")] for r in rows],
        mode="lines+markers",
        name=name,
        legendgroup=codec,
        showlegend=False,
        line={"color": style["colour"], "width": style["width"]},
        marker={
            "size": style["size"],
            "symbol": [shape if half_fit(r) else f"{shape}-open" for r in rows],
            "line": {"color": style["colour"], "width": 2},
        },
        hovertemplate=(
            f"<b>{name}</b>, every file ≤ %{{x}} bytes<br>{label} %{{y:.3f}}<br>"
            "%{customdata[0]} of %{customdata[1]} faces fit, mean %{customdata[2]:.0f} bytes"
            "<extra></extra>"
        ),
    )


def _sweep_trace(codec: str, style: dict, points: list[dict], metric: str, label: str) -> go.Scatter:
    """The codec at its own quality settings (x = mean bytes), dotted."""
    name, what = style["name"], style["what"]
    return go.Scatter(
        x=[p["bytes"] for p in points],
        y=[metric_value(p, metric) for p in points],
        customdata=[p["quality"] for p in points],
        mode="lines",
        name=f"{name} by {what}",
        legendgroup=codec,
        showlegend=False,
        line={"color": style["colour"], "width": 1.5, "dash": "dot"},
        hovertemplate=(
            f"<b>{name}</b> {what} %{{customdata}}<br>mean %{{x:.0f}} bytes<br>{label} %{{y:.3f}}<extra></extra>"
        ),
    )


def _budget_layout(fig: go.Figure, xs: list[float], table: list[dict]) -> None:
    # 32 bytes to just past the largest budget: the classic sweeps' best qualities run off the right.
    right = min(max(xs), 2 * max([r["max_bytes"] for r in table] or [2048]))
    ticks = [2**i for i in range(5, 16) if 2**i <= 1.1 * right]
    fig.update_xaxes(
        type="log",
        range=[math.log10(28), math.log10(1.15 * right)],
        tickvals=ticks,
        ticktext=[f"{t // 1024}k" if t >= 1024 else str(t) for t in ticks],
        tickangle=0,
        tickfont={"size": 13},
        title_text="bytes per face (log)",
    )
    fig.update_yaxes(range=[0, 105], row=1, col=3)
    fig.update_layout(
        template="plotly_white",
        font=FONT,
        hovermode="closest",
        height=520,
        legend={"orientation": "h", "yanchor": "top", "y": -0.22, "x": 0.5, "xanchor": "center"},
        margin={"t": 50, "b": 120, "l": 50, "r": 20},
    )
    fig.update_annotations(font={"size": FONT["size"] + 1})  # the panel titles


def budget_curves(evaluation: dict) -> go.Figure:
    """PSNR, SSIM and identity kept against bytes, side by side, one line per codec.

    Thick lines: every file held to a byte budget (x = the budget; the evaluation's
    "budget_table"), hollow markers where fewer than half the faces fit. Thin dotted lines,
    in the same colours and toggled with them from the legend: each codec at its own quality
    settings (x = mean bytes): the AE's and VAE's detail layer, the classic quality sweeps.
    """
    from plotly.subplots import make_subplots

    table = evaluation.get("budget_table") or []
    sweeps = evaluation.get("rate_distortion") or {}
    fig = make_subplots(rows=1, cols=3, subplot_titles=[label for _, label in BUDGET_PANELS], horizontal_spacing=0.07)
    xs: list[float] = [32.0]
    for codec in budget_codecs(table):
        style = _style(codec)
        rows = sorted((r for r in table if r["codec"] == codec), key=lambda r: r["max_bytes"])
        sweep = sweeps.get("detail" if codec in MODEL_KINDS else "classic") or []
        curve = sorted((p for p in sweep if p.get("model", p.get("format")) == codec), key=lambda p: p["bytes"])
        xs += [r["max_bytes"] for r in rows] + [p["bytes"] for p in curve]
        fig.add_trace(_legend_trace(codec, style), row=1, col=1)
        for col, (metric, label) in enumerate(BUDGET_PANELS, start=1):
            fig.add_trace(_budget_trace(codec, style, rows, metric, label), row=1, col=col)
            points = [p for p in curve if metric_value(p, metric) is not None]
            if points:
                fig.add_trace(_sweep_trace(codec, style, points, metric, label), row=1, col=col)
    _budget_layout(fig, xs, table)
    return fig


def quality_vs_latent(records: list[dict], metric: str = "psnr") -> go.Figure:
    """Mean quality against latent size, clean and under Gaussian input noise (sigma 0.1)."""
    label = "PSNR (dB)" if metric == "psnr" else "SSIM"
    fig = go.Figure()
    for model in MODEL_KINDS:
        rows = model_records(records, model)
        if not rows:
            continue
        latents = [r["latent"] for r in rows]
        fig.add_trace(
            go.Scatter(
                x=latents,
                y=[r[metric]["mean"] for r in rows],
                error_y={"type": "data", "array": [r[metric].get("std", 0) for r in rows], "visible": True},
                mode="lines+markers",
                name=f"{model.upper()} clean",
                line={"color": MODEL_COLOURS[model], "width": 3},
                hovertemplate=f"{model.upper()} latent %{{x}}<br>{label} %{{y:.3f}}<extra></extra>",
            )
        )
        if all("noisy" in r for r in rows):
            fig.add_trace(
                go.Scatter(
                    x=latents,
                    y=[r["noisy"][metric]["mean"] for r in rows],
                    mode="lines+markers",
                    name=f"{model.upper()} noisy input (σ = 0.1)",
                    line={"color": MODEL_COLOURS[model], "dash": "dash"},
                    hovertemplate=f"{model.upper()} noisy, latent %{{x}}<br>{label} %{{y:.3f}}<extra></extra>",
                )
            )
        fig.add_hline(
            y=STUDY[model][metric],
            line={"color": MODEL_COLOURS[model], "dash": "dot", "width": 1},
            annotation_text=f"study {model.upper()} ({STUDY[model]['floats']:,} grey floats)",
            annotation_position="top left",
        )
    fig = _layout(fig, f"{label} against latent size", "latent size (numbers per face, log)", label)
    fig.update_xaxes(type="log", tickvals=sorted({r["latent"] for r in records}))
    return fig


def histogram(records: list[dict], model: str, latent: int, metric: str) -> go.Figure:
    """The per-face distribution of one metric (the study's histograms), from stored bin counts."""
    rec = next((r for r in records if r["model"] == model and r["latent"] == latent), None)
    fig = go.Figure()
    hist = (rec or {}).get("hist", {}).get(metric)
    if hist:
        edges, counts = hist["edges"], hist["counts"]
        centres = [(a + b) / 2 for a, b in itertools.pairwise(edges)]
        widths = [b - a for a, b in itertools.pairwise(edges)]
        fig.add_trace(
            go.Bar(
                x=centres,
                y=counts,
                width=widths,
                marker={"color": MODEL_COLOURS.get(model, "#555")},
                customdata=list(itertools.pairwise(edges)),
                hovertemplate="%{customdata[0]:.4g} – %{customdata[1]:.4g}: %{y} faces<extra></extra>",
                name=metric.upper(),
            )
        )
    return _layout(fig, f"{model.upper()} latent {latent}: {metric.upper()} per face", metric.upper(), "faces")


def training_curves(cards: dict[str, dict]) -> go.Figure:
    """Training loss per epoch (solid) and validation MSE at the largest latent (dashed), log scale.

    Epochs count from scratch: a fine-tune's curve starts after the epochs it started from.
    """
    fig = go.Figure()
    last = 1
    for kind, card in cards.items():
        history = card.get("history") or []
        if not history:
            continue
        epochs = [h["epoch"] + epochs_before(card) for h in history]
        last = max(last, epochs[-1])
        colour = MODEL_COLOURS.get(kind, "#555")
        recon = [h.get("train", {}).get("reconstruction", h.get("train", {}).get("total")) for h in history]
        fig.add_trace(
            go.Scatter(
                x=epochs,
                y=recon,
                mode="lines+markers",
                name=f"{kind.upper()} train MSE",
                line={"color": colour},
                hovertemplate=f"{kind.upper()} epoch %{{x}}<br>train MSE %{{y:.5f}}<extra></extra>",
            )
        )
        if any("kl" in h.get("train", {}) for h in history):
            fig.add_trace(
                go.Scatter(
                    x=epochs,
                    y=[h["train"].get("kl") for h in history],
                    mode="lines",
                    name=f"{kind.upper()} train KL (per pixel)",
                    line={"color": colour, "dash": "dot"},
                    hovertemplate=f"{kind.upper()} epoch %{{x}}<br>KL %{{y:.5f}}<extra></extra>",
                )
            )
        val = [h.get("val_psnr") or {} for h in history]
        sizes = sorted({int(k) for v in val for k in v})
        if sizes:
            top = str(sizes[-1])
            fig.add_trace(
                go.Scatter(
                    x=epochs,
                    y=[10 ** (-v[top] / 10) if top in v else None for v in val],
                    mode="lines+markers",
                    # Cards keep mean PSNR per epoch; 10^(-PSNR/10) is the MSE at that PSNR.
                    name=f"{kind.upper()} validation MSE at mean PSNR (latent {top})",
                    line={"color": colour, "dash": "dash"},
                    hovertemplate=f"{kind.upper()} epoch %{{x}}<br>validation MSE %{{y:.5f}}<extra></extra>",
                )
            )
    fig = _layout(fig, "Training and validation loss", "epoch (from scratch)", "loss (log)")
    fig.update_xaxes(dtick=max(1, -(-last // 10)))  # whole epochs only
    fig.update_yaxes(type="log")
    return fig


def noise_robustness(records: list[dict]) -> go.Figure:
    """PSNR lost when the input carries Gaussian noise of sigma 0.1, per model and latent size."""
    fig = go.Figure()
    for model in MODEL_KINDS:
        rows = [r for r in model_records(records, model) if "noisy" in r]
        if not rows:
            continue
        fig.add_trace(
            go.Bar(
                x=[str(r["latent"]) for r in rows],
                y=[r["psnr"]["mean"] - r["noisy"]["psnr"]["mean"] for r in rows],
                name=model.upper(),
                marker={"color": MODEL_COLOURS[model]},
                customdata=[[r["psnr"]["mean"], r["noisy"]["psnr"]["mean"]] for r in rows],
                hovertemplate=(
                    f"{model.upper()} latent %{{x}}<br>clean %{{customdata[0]:.2f}} dB, "
                    "noisy %{customdata[1]:.2f} dB<br>lost %{y:.2f} dB<extra></extra>"
                ),
            )
        )
    fig.update_layout(barmode="group")
    fig.update_xaxes(type="category")
    return _layout(fig, "PSNR lost under input noise σ = 0.1", "latent size", "dB lost")


# ---- the latent space (weights/latent_space.json) ------------------------------------
