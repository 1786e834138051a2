"""Plotly figures for the benchmark page, built from the evaluation JSON and the model cards.

No Streamlit here: the same figures can be written to HTML from a script.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import plotly.graph_objects as go

from .attributes import MIN_BALANCED_ACCURACY
from .classic import CLASSIC_FORMATS, CLASSIC_NAMES
from .evaluate import best_within_budgets
from .model import MODEL_KINDS
from .weights import default_weights_dir

MODEL_COLOURS = {"ae": "#1f77b4", "vae": "#d62728"}
CLASSIC_COLOURS = {"JPEG": "#7f7f7f", "WEBP": "#2ca02c", "AVIF": "#9467bd", "HEIF": "#ff7f0e", "JXL": "#8c564b"}
# The public study we improve on: grayscale 128x128 FFHQ, AE with 4,096 floats, MLP VAE with 200.
STUDY = {"ae": {"psnr": 23.99, "ssim": 0.727, "floats": 4096}, "vae": {"psnr": 10.4, "ssim": 0.25, "floats": 200}}
FONT = {"size": 17}  # readable from the back of a room


def evaluation_path(weights_dir: Path | None = None) -> Path:
    return Path(weights_dir or default_weights_dir()) / "evaluation.json"


def read_evaluation(weights_dir: Path | None = None) -> dict | None:
    """The committed evaluation as {"records": [...], "rate_distortion": {...}, ...}, or None."""
    path = evaluation_path(weights_dir)
    if not path.exists():
        return None
    data = json.loads(path.read_text())
    return data if isinstance(data, dict) else {"records": data}  # a bare list of records also works


def _coded(r: dict, metric: str) -> float:
    """Quality of the real .fcz file when the record has it (quantised), else of the float code."""
    return r.get("codec", r)[metric]["mean"]


def _records(records: list[dict], model: str) -> list[dict]:
    return sorted((r for r in records if r.get("model") == model), key=lambda r: r["latent"])


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


def rate_distortion(records: list[dict], metric: str = "psnr", sweeps: dict | None = None) -> go.Figure:
    """PSNR or SSIM against real bytes per face: AE and VAE per latent size (quality of the real
    .fcz files), classic codecs at the highest quality that fits the same budget, and, from
    `sweeps` (the evaluation's "rate_distortion"), each classic codec over its quality range."""
    label = "PSNR (dB)" if metric == "psnr" else "SSIM"
    fig = go.Figure()
    for model in MODEL_KINDS:
        rows = _records(records, model)
        if not rows:
            continue
        fig.add_trace(
            go.Scatter(
                x=[r["bytes"]["real"] for r in rows],
                y=[_coded(r, metric) for r in rows],
                customdata=[[r["latent"], r["bytes"].get("estimated", float("nan"))] for r in rows],
                mode="lines+markers",
                name=model.upper(),
                line={"color": MODEL_COLOURS[model], "width": 3},
                marker={"size": 10},
                hovertemplate=(
                    f"<b>{model.upper()}</b> latent %{{customdata[0]}}<br>%{{x:.0f}} bytes "
                    f"(estimate %{{customdata[1]:.0f}})<br>{label} %{{y:.3f}}<extra></extra>"
                ),
            )
        )
    for fmt, colour in CLASSIC_COLOURS.items():
        points = []
        for r in records:
            c = r.get("classic", {}).get(fmt)
            if c and c.get(metric) is not None and c.get("bytes") is not None:
                points.append((c["bytes"], c[metric], c.get("failed", 0), r["model"].upper(), r["latent"]))
        if not points:
            continue
        points.sort()
        fig.add_trace(
            go.Scatter(
                x=[p[0] for p in points],
                y=[p[1] for p in points],
                customdata=[[p[2], p[3], p[4]] for p in points],
                mode="markers",
                name=CLASSIC_NAMES[fmt],
                marker={"color": colour, "size": 11, "symbol": "diamond"},
                hovertemplate=(
                    f"<b>{CLASSIC_NAMES[fmt]}</b> at the %{{customdata[1]}} latent-%{{customdata[2]}} budget"
                    f"<br>%{{x:.0f}} bytes<br>{label} %{{y:.3f}}<br>%{{customdata[0]}} faces could not fit"
                    "<extra></extra>"
                ),
            )
        )
    for fmt, colour in CLASSIC_COLOURS.items():
        points = sorted(
            (p["bytes"], p[metric], p["quality"])
            for p in (sweeps or {}).get("classic", [])
            if p.get("format") == fmt and p.get(metric) is not None
        )
        if points:
            fig.add_trace(
                go.Scatter(
                    x=[p[0] for p in points],
                    y=[p[1] for p in points],
                    customdata=[p[2] for p in points],
                    mode="lines+markers",
                    name=f"{CLASSIC_NAMES[fmt]}, quality 0–90",
                    line={"color": colour, "dash": "dot"},
                    marker={"size": 6},
                    hovertemplate=(
                        f"<b>{CLASSIC_NAMES[fmt]}</b> quality %{{customdata}}<br>%{{x:.0f}} bytes"
                        f"<br>{label} %{{y:.3f}}<extra></extra>"
                    ),
                )
            )
    return _layout(fig, f"{label} against real bytes per face", "bytes per 128×128 face (log)", label, log_x=True)


def quality_vs_latent(records: list[dict], metric: str = "psnr") -> go.Figure:
    """Mean quality against latent size, clean and under Gaussian input noise (sigma 0.1)."""
    label = "PSNR (dB)" if metric == "psnr" else "SSIM"
    fig = go.Figure()
    for model in MODEL_KINDS:
        rows = _records(records, model)
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


def _epochs_before(card: dict) -> int:
    """Epochs of the run a fine-tuned model started from (its card holds only its own run)."""
    return (card.get("initialised_from") or {}).get("total_epochs") or 0


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
        epochs = [h["epoch"] + _epochs_before(card) for h in history]
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


def training_note(cards: dict[str, dict]) -> str:
    """Which runs the training chart shows, for a caption."""
    notes = []
    for kind, card in cards.items():
        before, own = _epochs_before(card), card.get("epochs")
        if before:
            notes.append(f"{kind.upper()}: epochs {before + 1}–{before + own}, fine-tuned from a {before}-epoch run")
        elif own:
            notes.append(f"{kind.upper()}: epochs 1–{own}")
    return "; ".join(notes) + ". A card keeps the curve of its own run only." if notes else ""


def noise_robustness(records: list[dict]) -> go.Figure:
    """PSNR lost when the input carries Gaussian noise of sigma 0.1, per model and latent size."""
    fig = go.Figure()
    for model in MODEL_KINDS:
        rows = [r for r in _records(records, model) if "noisy" in r]
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


def summary_rows(records: list[dict]) -> list[dict]:
    """One flat row per record for a table (columns for the classic codecs the evaluation measured)."""
    formats = [f for f in CLASSIC_FORMATS if any(f in r.get("classic", {}) for r in records)]
    rows = []
    for r in sorted(records, key=lambda r: (r["model"], r["latent"])):
        row = {
            "model": r["model"].upper(),
            "latent": r["latent"],
            "bytes": round(r.get("bytes", {}).get("real", float("nan")), 1),
            "PSNR dB": round(r["psnr"]["mean"], 2),
            ".fcz PSNR dB": round(_coded(r, "psnr"), 2),
            "SSIM": round(r["ssim"]["mean"], 3),
        }
        for fmt in formats:
            name = CLASSIC_NAMES[fmt]
            c = r.get("classic", {}).get(fmt)
            row[f"{name} dB"] = None if not c or c.get("psnr") is None else round(c["psnr"], 2)
            row[f"{name} failed"] = None if not c else c.get("failed")
        rows.append(row)
    return rows


def budget_rows(evaluation: dict) -> list[dict]:
    """The best model and latent size when every .fcz file must fit a byte budget."""
    return [
        {
            "every file at most": f"{max_bytes} bytes",
            "model": best["model"].upper(),
            "latent size": best["latent"],
            "mean bytes": round(best["bytes"], 1),
            "largest file": best["largest_file"],
            "PSNR dB": round(best["psnr"], 2),
            "SSIM": round(best["ssim"], 3),
        }
        for max_bytes, best in best_within_budgets(evaluation).items()
    ]


def smallest_classic_files(evaluation: dict) -> str:
    """The classic codecs' mean file size at quality 0, their smallest setting, as text."""
    sweeps = (evaluation.get("rate_distortion") or {}).get("classic") or []
    return ", ".join(f"{CLASSIC_NAMES[r['format']]} {r['bytes']:.0f}" for r in sweeps if r["quality"] == 0)


def bytes_table(records: list[dict] | None, ladder: tuple[int, ...]) -> list[dict]:
    """What a latent size costs: raw float32 bytes against the measured .fcz bytes."""
    rows = []
    for k in ladder:
        row = {"latent size": k, "float32 bytes": 4 * k}
        for model in MODEL_KINDS:
            rec = next((r for r in records or [] if r["model"] == model and r["latent"] == k), None)
            real = (rec or {}).get("bytes", {}).get("real")
            row[f"{model.upper()} .fcz bytes"] = None if real is None else round(real)
        rows.append(row)
    return rows


def study_comparison(records: list[dict] | None, latent: int = 256) -> list[dict]:
    """The public study's numbers beside ours at one latent size."""
    rows = [
        {
            "": "Study AE (grey, 4,096 floats)",
            "bytes": "16,384 (floats, never coded)",
            "PSNR dB": STUDY["ae"]["psnr"],
            "SSIM": STUDY["ae"]["ssim"],
        },
        {
            "": "Study MLP VAE (grey, 200 floats)",
            "bytes": "800 (floats, never coded)",
            "PSNR dB": STUDY["vae"]["psnr"],
            "SSIM": STUDY["vae"]["ssim"],
        },
    ]
    for model in MODEL_KINDS:
        rec = next((r for r in records or [] if r["model"] == model and r["latent"] == latent), None)
        if rec:
            rows.append(
                {
                    "": f"FaceComp {model.upper()} (colour, latent {latent})",
                    "bytes": f"{rec.get('bytes', {}).get('real', float('nan')):.0f} (real .fcz)",
                    "PSNR dB": round(_coded(rec, "psnr"), 2),
                    "SSIM": round(_coded(rec, "ssim"), 3),
                }
            )
    return rows


# ---- the latent space (weights/latent_space.json) ------------------------------------


def sampler_rows(report: dict) -> list[dict]:
    """FD-dlib of each model's two samplers against real faces (lower is more face-like)."""
    rows = []
    for kind, row in report.get("models", {}).items():
        fd = row["fd_dlib"]
        rows.append(
            {
                "model": kind.upper(),
                "FD-dlib, prior N(0, I)": round(fd["prior"], 3),
                "FD-dlib, fitted Gaussian": round(fd["fitted"], 3),
                "prior / fitted": round(fd["prior_over_fitted"], 2),
                "PSNR at 256 (dB)": row["validation_psnr"]["256"],
                "identity kept at 256": f"{row['identity_256']['kept']:.0%}",
            }
        )
    return rows


def sweep_rows(report: dict) -> list[dict]:
    """The KL-weight sweep: what a latent space worth sampling costs in PSNR and identity."""
    rows = []
    for row in report.get("sweep", []):
        fd = row["fd_dlib"]
        rows.append(
            {
                "run": Path(row["weights"]).parent.parent.name,
                "KL weight": row["kl_weight"],
                "epochs": row.get("epochs"),
                **{f"PSNR {k}": v for k, v in row["validation_psnr"].items()},
                "identity kept at 256": f"{row['identity_256']['kept']:.0%}",
                "FD-dlib prior": round(fd["prior"], 3),
                "FD-dlib fitted": round(fd["fitted"], 3),
                "prior / fitted": round(fd["prior_over_fitted"], 2),
            }
        )
    return rows


def edit_rows(report: dict) -> list[dict]:
    """Per named slider: held-out accuracy, how often a 2σ edit flips it, how often 1σ keeps the person."""
    return [
        {
            "direction": name,
            "balanced accuracy": f"{row['balanced_accuracy']:.1%}",
            "flips at 2σ": f"{row['flip_rate']:.0%}",
            "person kept at ±1σ": f"{row['identity_kept']:.0%}",
            "slider shown": "yes" if row["balanced_accuracy"] >= MIN_BALANCED_ACCURACY else "no",
            "70% flips and 80% kept": "yes" if row["meets_edit_targets"] else "no",
        }
        for name, row in sorted(report.get("edits", {}).items(), key=lambda kv: -kv[1]["balanced_accuracy"])
    ]
