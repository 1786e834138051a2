"""The tables the Benchmarks and How it works pages show, and reading the evaluation they come from.

Plain data in, rows (lists of dicts) or a pandas Styler out; no Streamlit, no plotting.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..latent.attributes import slider_placement
from ..spec import CLASSIC_FORMATS, MODEL_KINDS, SHOWN_BUDGETS, codec_name
from ..weight_files import default_weights_dir

# The public study we improve on: grayscale 128x128 FFHQ, AE with 4,096 floats, MLP VAE with 200.
STUDY = {"ae": {"psnr": 23.99, "ssim": 0.727, "floats": 4096}, "vae": {"psnr": 10.4, "ssim": 0.25, "floats": 200}}


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


def coded(r: dict, metric: str) -> float:
    """Quality of the real .fcz file when the record has it (quantised), else of the float code."""
    return r.get("codec", r)[metric]["mean"]


def model_records(records: list[dict], model: str) -> list[dict]:
    return sorted((r for r in records if r.get("model") == model), key=lambda r: r["latent"])


def metric_value(row: dict, metric: str) -> float | None:
    """PSNR, SSIM or identity kept (%) of one evaluation row; None where it was not measured."""
    if metric != "identity":
        return row.get(metric)
    identity = row.get("identity")
    return None if not identity or identity.get("kept") is None else 100 * identity["kept"]


def budget_codecs(table: list[dict]) -> list[str]:
    """The budget table's codecs, AE and VAE first, then the classic ones in their usual order."""
    present = {r["codec"] for r in table}
    known = [*MODEL_KINDS, *CLASSIC_FORMATS]
    return [c for c in known if c in present] + sorted(present - set(known))


def half_fit(row: dict) -> bool:
    return 2 * row.get("fitted", 0) >= row.get("faces", 1)


def smallest_classic_note(evaluation: dict) -> str:
    """The classic codecs whose files never fit the smallest budgets, with the median size of a file, as text."""
    table = evaluation.get("budget_table") or []
    notes = []
    for codec in budget_codecs(table):
        rows = sorted((r for r in table if r["codec"] == codec), key=lambda r: r["max_bytes"])
        if rows and not rows[0].get("fitted") and rows[0].get("smallest_file"):
            notes.append(f"{codec_name(codec)} {rows[0]['smallest_file']:.0f}")
    return ", ".join(notes)


def _cell(row: dict | None) -> str:
    """ "PSNR · identity kept · fitted/faces" of one codec at one budget (PSNR in dB, without the unit)."""
    if row is None:
        return "not measured"
    fits = f"{row.get('fitted', 0)}/{row.get('faces', 0)}"
    if not row.get("fitted") or row.get("psnr") is None:
        return f"none fit · {fits}"
    kept = metric_value(row, "identity")
    return f"{row['psnr']:.2f} · {'n/a' if kept is None else f'{kept:.0f}%'} · {fits}"


def budget_table(evaluation: dict, budgets: tuple[int, ...] = SHOWN_BUDGETS) -> list[dict]:
    """Rows = byte budgets, columns = codecs, cells "PSNR (dB) · identity kept % · fitted/faces"."""
    table = evaluation.get("budget_table") or []
    codecs = budget_codecs(table)
    rows = []
    for max_bytes in budgets:
        found = {r["codec"]: r for r in table if r["max_bytes"] == max_bytes}
        if found:
            rows.append({"bytes at most": f"{max_bytes:,}"} | {codec_name(c): _cell(found.get(c)) for c in codecs})
    return rows


def budget_winners(evaluation: dict, budgets: tuple[int, ...] = SHOWN_BUDGETS) -> dict[int, str]:
    """Per budget, the codec (display name) with the best PSNR among those that fit at least half the faces."""
    winners = {}
    for max_bytes in budgets:
        rows = [
            r
            for r in evaluation.get("budget_table") or []
            if r["max_bytes"] == max_bytes and r.get("psnr") is not None and half_fit(r)
        ]
        if rows:
            winners[max_bytes] = codec_name(max(rows, key=lambda r: r["psnr"])["codec"])
    return winners


def budget_styler(evaluation: dict, budgets: tuple[int, ...] = SHOWN_BUDGETS) -> object:
    """The budget table as a pandas Styler: each budget's best PSNR (among codecs that fit at least
    half the faces) highlighted, cells where fewer than half fit greyed."""
    import pandas as pd

    rows = budget_table(evaluation, budgets)
    frame = pd.DataFrame(rows).set_index("bytes at most") if rows else pd.DataFrame()
    winners = {f"{b:,}": name for b, name in budget_winners(evaluation, budgets).items()}
    under = {
        (f"{r['max_bytes']:,}", codec_name(r["codec"])) for r in evaluation.get("budget_table") or [] if not half_fit(r)
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


def epochs_before(card: dict) -> int:
    """Epochs of the run a fine-tuned model started from (its card holds only its own run)."""
    return (card.get("initialised_from") or {}).get("total_epochs") or 0


def training_note(cards: dict[str, dict]) -> str:
    """Which runs the training chart shows, for a caption."""
    notes = []
    for kind, card in cards.items():
        before, own = epochs_before(card), card.get("epochs")
        if before:
            notes.append(f"{kind.upper()}: epochs {before + 1}–{before + own}, fine-tuned from a {before}-epoch run")
        elif own:
            notes.append(f"{kind.upper()}: epochs 1–{own}")
    return "; ".join(notes) + ". A card keeps the curve of its own run only." if notes else ""


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
            ".fcz PSNR dB": round(coded(r, "psnr"), 2),
            "SSIM": round(r["ssim"]["mean"], 3),
        }
        if with_identity:
            kept = metric_value(r.get("codec", {}), "identity")
            row[".fcz identity kept"] = None if kept is None else f"{kept:.0f}%"
        for fmt in formats:
            name = codec_name(fmt)
            c = r.get("classic", {}).get(fmt)
            row[f"{name} dB"] = None if not c or c.get("psnr") is None else round(c["psnr"], 2)
            row[f"{name} failed"] = None if not c else c.get("failed")
        rows.append(row)
    return rows


def smallest_classic_files(evaluation: dict) -> str:
    """The classic codecs' mean file size at quality 0, their smallest setting, as text."""
    sweeps = (evaluation.get("rate_distortion") or {}).get("classic") or []
    return ", ".join(f"{codec_name(r['format'])} {r['bytes']:.0f}" for r in sweeps if r["quality"] == 0)


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
                    "PSNR dB": round(coded(rec, "psnr"), 2),
                    "SSIM": round(coded(rec, "ssim"), 3),
                }
            )
    return rows


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


def edit_rows(report: dict, placement: bool = True) -> list[dict]:
    """Per named slider: held-out accuracy, how often a 2σ edit flips it (read back by the VAE,
    and by the AE as a check), how often 1σ keeps the person, and (with `placement`) where the
    explorer puts it."""
    rows = []
    for name, row in sorted(report.get("edits", {}).items(), key=lambda kv: -kv[1]["balanced_accuracy"]):
        line = {
            "direction": name,
            "balanced accuracy": f"{row['balanced_accuracy']:.1%}",
            "flips at 2σ": f"{row['flip_rate']:.0%}",
            "flips, read by the AE": f"{row['flip_rate_other_model']:.0%}" if "flip_rate_other_model" in row else "",
            "person kept at ±1σ": f"{row['identity_kept']:.0%}",
            "70% flips and 80% kept": "yes" if row["meets_edit_targets"] else "no",
        }
        rows.append(line | ({"slider": slider_placement(row["balanced_accuracy"], row)} if placement else {}))
    return rows
