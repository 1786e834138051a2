"""Plotly figures for the benchmark page, built from the evaluation JSON and the model cards.

No Streamlit here: the same figures can be written to HTML from a script.
"""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path

import plotly.graph_objects as go

from .attributes import slider_placement
from .classic import CLASSIC_FORMATS, CLASSIC_NAMES
from .model import MODEL_KINDS
from .weight_files import default_weights_dir

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


def unmeasured_kinds(evaluation: dict, current: dict[str, dict]) -> list[str]:
    """The kinds in `current` (weights.measured_weights, by kind) whose weights are not the ones the
    evaluation measured: all of them for an evaluation that does not say (written before it did)."""
    measured = evaluation.get("weights", {})
    return [kind for kind, hashes in current.items() if measured.get(kind) != hashes]


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


BUDGET_PANELS = (("psnr", "PSNR (dB)"), ("ssim", "SSIM"), ("identity", "identity kept (%)"))
TABLE_BUDGETS = (64, 128, 256, 512, 1024, 2048)  # rows of the budget table on the page


def _codec_name(codec: str) -> str:
    return codec.upper() if codec in MODEL_KINDS else CLASSIC_NAMES.get(codec, codec)


def _codec_colour(codec: str) -> str:
    return MODEL_COLOURS.get(codec) or CLASSIC_COLOURS.get(codec, "#555")


def _value(row: dict, metric: str) -> float | None:
    """PSNR, SSIM or identity kept (%) of one evaluation row; None where it was not measured."""
    if metric != "identity":
        return row.get(metric)
    identity = row.get("identity")
    return None if not identity or identity.get("kept") is None else 100 * identity["kept"]


def _budget_codecs(table: list[dict]) -> list[str]:
    """The budget table's codecs, AE and VAE first, then the classic ones in their usual order."""
    present = {r["codec"] for r in table}
    known = [*MODEL_KINDS, *CLASSIC_FORMATS]
    return [c for c in known if c in present] + sorted(present - set(known))


def _half_fit(row: dict) -> bool:
    return 2 * row.get("fitted", 0) >= row.get("faces", 1)


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
    for codec in _budget_codecs(table):
        name, colour = _codec_name(codec), _codec_colour(codec)
        model = codec in MODEL_KINDS
        rows = sorted((r for r in table if r["codec"] == codec), key=lambda r: r["max_bytes"])
        curve = [
            p for p in (sweeps.get("detail" if model else "classic") or []) if p.get("model", p.get("format")) == codec
        ]
        curve.sort(key=lambda p: p["bytes"])
        xs += [r["max_bytes"] for r in rows] + [p["bytes"] for p in curve]
        shape = "circle" if model else "diamond"
        # The legend entry: a filled marker whatever the first budget's marker is.
        fig.add_trace(
            go.Scatter(
                x=[None],
                y=[None],
                mode="lines+markers",
                name=name,
                legendgroup=codec,
                line={"color": colour, "width": 3 if model else 2},
                marker={"size": 10 if model else 9, "symbol": shape, "color": colour},
            ),
            row=1,
            col=1,
        )
        for col, (metric, label) in enumerate(BUDGET_PANELS, start=1):
            fig.add_trace(
                go.Scatter(
                    x=[r["max_bytes"] for r in rows],
                    y=[_value(r, metric) for r in rows],
                    customdata=[[r.get("fitted", 0), r.get("faces", 0), r.get("bytes") or float("nan")] for r in rows],
                    mode="lines+markers",
                    name=name,
                    legendgroup=codec,
                    showlegend=False,
                    line={"color": colour, "width": 3 if model else 2},
                    marker={
                        "size": 10 if model else 9,
                        "symbol": [shape if _half_fit(r) else f"{shape}-open" for r in rows],
                        "line": {"color": colour, "width": 2},
                    },
                    hovertemplate=(
                        f"<b>{name}</b>, every file ≤ %{{x}} bytes<br>{label} %{{y:.3f}}<br>"
                        "%{customdata[0]} of %{customdata[1]} faces fit, mean %{customdata[2]:.0f} bytes"
                        "<extra></extra>"
                    ),
                ),
                row=1,
                col=col,
            )
            points = [p for p in curve if _value(p, metric) is not None]
            if points:
                what = "detail layer quality" if model else "quality"
                fig.add_trace(
                    go.Scatter(
                        x=[p["bytes"] for p in points],
                        y=[_value(p, metric) for p in points],
                        customdata=[p["quality"] for p in points],
                        mode="lines",
                        name=f"{name} by {what}",
                        legendgroup=codec,
                        showlegend=False,
                        line={"color": colour, "width": 1.5, "dash": "dot"},
                        hovertemplate=(
                            f"<b>{name}</b> {what} %{{customdata}}<br>mean %{{x:.0f}} bytes<br>"
                            f"{label} %{{y:.3f}}<extra></extra>"
                        ),
                    ),
                    row=1,
                    col=col,
                )
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
    return fig


def smallest_classic_note(evaluation: dict) -> str:
    """The classic codecs whose files never fit the smallest budgets, with the median size of a file, as text."""
    table = evaluation.get("budget_table") or []
    notes = []
    for codec in _budget_codecs(table):
        rows = sorted((r for r in table if r["codec"] == codec), key=lambda r: r["max_bytes"])
        if rows and not rows[0].get("fitted") and rows[0].get("smallest_file"):
            notes.append(f"{_codec_name(codec)} {rows[0]['smallest_file']:.0f}")
    return ", ".join(notes)


def _cell(row: dict | None) -> str:
    """ "PSNR · identity kept · fitted/faces" of one codec at one budget (PSNR in dB, without the unit)."""
    if row is None:
        return "not measured"
    fits = f"{row.get('fitted', 0)}/{row.get('faces', 0)}"
    if not row.get("fitted") or row.get("psnr") is None:
        return f"none fit · {fits}"
    kept = _value(row, "identity")
    return f"{row['psnr']:.2f} · {'n/a' if kept is None else f'{kept:.0f}%'} · {fits}"


def budget_table(evaluation: dict, budgets: tuple[int, ...] = TABLE_BUDGETS) -> list[dict]:
    """Rows = byte budgets, columns = codecs, cells "PSNR (dB) · identity kept % · fitted/faces"."""
    table = evaluation.get("budget_table") or []
    codecs = _budget_codecs(table)
    rows = []
    for max_bytes in budgets:
        found = {r["codec"]: r for r in table if r["max_bytes"] == max_bytes}
        if found:
            rows.append({"bytes at most": f"{max_bytes:,}"} | {_codec_name(c): _cell(found.get(c)) for c in codecs})
    return rows


def budget_winners(evaluation: dict, budgets: tuple[int, ...] = TABLE_BUDGETS) -> dict[int, str]:
    """Per budget, the codec (display name) with the best PSNR among those that fit at least half the faces."""
    winners = {}
    for max_bytes in budgets:
        rows = [
            r
            for r in evaluation.get("budget_table") or []
            if r["max_bytes"] == max_bytes and r.get("psnr") is not None and _half_fit(r)
        ]
        if rows:
            winners[max_bytes] = _codec_name(max(rows, key=lambda r: r["psnr"])["codec"])
    return winners


def budget_styler(evaluation: dict, budgets: tuple[int, ...] = TABLE_BUDGETS) -> object:
    """The budget table as a pandas Styler: each budget's best PSNR (among codecs that fit at least
    half the faces) highlighted, cells where fewer than half fit greyed."""
    import pandas as pd

    rows = budget_table(evaluation, budgets)
    frame = pd.DataFrame(rows).set_index("bytes at most") if rows else pd.DataFrame()
    winners = {f"{b:,}": name for b, name in budget_winners(evaluation, budgets).items()}
    under = {
        (f"{r['max_bytes']:,}", _codec_name(r["codec"]))
        for r in evaluation.get("budget_table") or []
        if not _half_fit(r)
    }

    def style(column: pd.Series) -> list[str]:
        return [
            "background-color: #d9f2d0; font-weight: bold"
            if winners.get(index) == column.name
            else "color: #999"
            if (index, column.name) in under
            else ""
            for index in column.index
        ]

    return frame.style.apply(style)


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
    """One flat row per record for a table (columns for the classic codecs the evaluation measured,
    and identity kept by the .fcz file when the evaluation measured it)."""
    formats = [f for f in CLASSIC_FORMATS if any(f in r.get("classic", {}) for r in records)]
    with_identity = any(r.get("codec", {}).get("identity") for r in records)
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
        if with_identity:
            kept = _value(r.get("codec", {}), "identity")
            row[".fcz identity kept"] = None if kept is None else f"{kept:.0f}%"
        for fmt in formats:
            name = CLASSIC_NAMES[fmt]
            c = r.get("classic", {}).get(fmt)
            row[f"{name} dB"] = None if not c or c.get("psnr") is None else round(c["psnr"], 2)
            row[f"{name} failed"] = None if not c else c.get("failed")
        rows.append(row)
    return rows


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
    """Per named slider: held-out accuracy, how often a 2σ edit flips it (read back by the VAE,
    and by the AE as a check), how often 1σ keeps the person, and where the explorer puts it."""
    return [
        {
            "direction": name,
            "balanced accuracy": f"{row['balanced_accuracy']:.1%}",
            "flips at 2σ": f"{row['flip_rate']:.0%}",
            "flips, read by the AE": f"{row['flip_rate_other_model']:.0%}" if "flip_rate_other_model" in row else "",
            "person kept at ±1σ": f"{row['identity_kept']:.0%}",
            "70% flips and 80% kept": "yes" if row["meets_edit_targets"] else "no",
            "slider": slider_placement(row["balanced_accuracy"], row),
        }
        for name, row in sorted(report.get("edits", {}).items(), key=lambda kv: -kv[1]["balanced_accuracy"])
    ]
