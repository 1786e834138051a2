"""docs/results.md and README's headline table, generated from the measured JSON files.

    python -m facecomp results           # write them
    python -m facecomp results --check   # name the files that disagree with the JSON; exit 1 if any

The numbers come from weights/evaluation.json (`python -m facecomp evaluate`),
weights/latent_space.json (`python -m facecomp latent-space`) and weights/realism.json
(`python -m facecomp realism`): measure again, then rerun
this, and no table is ever copied by hand. README keeps one table, between the markers
BEGIN and END; docs/results.md has all of them. Plain Python (json, pathlib): no torch.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from ..spec import codec_name

REPO_ROOT = Path(__file__).resolve().parents[2]
RESULTS_DOC = Path("docs/results.md")
README = Path("README.md")
EVALUATION = Path("weights/evaluation.json")
LATENT_SPACE = Path("weights/latent_space.json")
REALISM = Path("weights/realism.json")
BEGIN, END = "<!-- results:begin -->", "<!-- results:end -->"
HEADLINE_BUDGETS = (64, 256, 512, 1024, 2048)  # bytes; those the evaluation measured are shown


def _pct(share: float | None) -> str:
    return "–" if share is None else f"{100 * share:.0f}%"


def _kept(row: dict) -> str:
    """Identity kept (the share of faces dlib calls the same person), "–" when not measured."""
    return _pct((row.get("identity") or {}).get("kept"))


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join("---" for _ in header) + " |"]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows]) + "\n"


def _budget_rows(evaluation: dict) -> dict[int, dict[str, dict]]:
    """budget_table by byte budget, then by codec key (ae, vae, JPEG, ...), in the JSON's order."""
    by_budget: dict[int, dict[str, dict]] = {}
    for row in evaluation.get("budget_table", []):
        by_budget.setdefault(row["max_bytes"], {})[row["codec"]] = row
    return dict(sorted(by_budget.items()))


def _counts(row: dict) -> bool:
    """A codec's mean is shown against FaceComp's where its file fits at least half of the faces."""
    return bool(row["fitted"]) and 2 * row["fitted"] >= row["faces"]


def _best(rows: dict[str, dict], keys: Sequence[str]) -> str | None:
    """The codec among `keys` with the highest mean PSNR where it counts (_counts); None if none."""
    counted = [k for k in keys if k in rows and _counts(rows[k])]
    return max(counted, key=lambda k: rows[k]["psnr"], default=None)


def _models(rows: dict[str, dict]) -> list[str]:
    return [k for k in rows if k in ("ae", "vae")]


def _classics(rows: dict[str, dict]) -> list[str]:
    return [k for k in rows if k not in ("ae", "vae")]


def render_headline(evaluation: dict) -> str:
    """README's one table: FaceComp against the best classic codec at a few byte budgets."""
    by_budget = _budget_rows(evaluation)
    rows = []
    for budget in (b for b in HEADLINE_BUDGETS if b in by_budget):
        cells = by_budget[budget]
        ours = _best(cells, _models(cells))
        theirs = _best(cells, _classics(cells))
        row = [f"{budget:,} bytes"]
        if ours is None:
            row += ["no file fits", "–"]
        else:
            row += [f"**{cells[ours]['psnr']:.2f} dB** ({codec_name(ours)})", _kept(cells[ours])]
        if theirs is None:
            some = [k for k in _classics(cells) if cells[k]["fitted"]]
            fits = ", ".join(f"{codec_name(k)} {cells[k]['fitted']}/{cells[k]['faces']}" for k in some)
            row += [f"none fits half of the faces ({fits})" if some else "no file fits", "–"]
        else:
            fit = f"{cells[theirs]['fitted']}/{cells[theirs]['faces']} fit"
            row += [f"{cells[theirs]['psnr']:.2f} dB ({codec_name(theirs)}, {fit})", _kept(cells[theirs])]
        rows.append(row)
    header = ["every file at most", "FaceComp", "identity kept", "best classic codec", "identity kept"]
    faces = evaluation.get("codec_faces", "the")
    return (
        _table(header, rows) + "\n"
        f"Mean PSNR over {faces} validation faces, each file at most the budget. FaceComp: the better of its two "
        "models, every file fitting. The best of JPEG, WebP, AVIF, HEIC and JPEG XL at the highest quality that "
        "fits, among those whose file fits at least half of the faces (the mean is over those). Identity kept: "
        "the share of faces whose decoded picture dlib calls the same person as the original (descriptor "
        "distance below 0.6).\n"
    )


def _short(sha256: str | None) -> str:
    return "none" if not sha256 else f"{sha256[:12]}…"


def _setup(evaluation: dict) -> str:
    weights = evaluation.get("weights", {})
    named = "; ".join(
        f"{codec_name(kind)} codec `{_short(w.get('codec_sha256'))}`, detail layer `{_short(w.get('detail_sha256'))}`"
        for kind, w in weights.items()
    )
    return (
        f"Model metrics on all {evaluation['faces']:,} validation faces (people never seen in training). "
        f"The `.fcz` files, byte budgets, classic codecs and identity on {evaluation['codec_faces']} of them, "
        f"spread evenly over the split; input noise σ = {evaluation['noise_sigma']}. The run took "
        f"{evaluation['seconds']:,.0f} s. Weights measured (SHA-256): {named or 'not recorded'}.\n"
    )


def _budget_table(evaluation: dict) -> str:
    by_budget = _budget_rows(evaluation)
    codecs = list(dict.fromkeys(k for cells in by_budget.values() for k in cells))
    rows = []
    for budget, cells in by_budget.items():
        best = _best(cells, list(cells))
        row = [f"{budget:,} bytes"]
        for codec in codecs:
            cell = cells.get(codec)
            if cell is None or not cell["fitted"]:
                row.append("none fit")
                continue
            psnr = f"**{cell['psnr']:.2f} dB**" if codec == best else f"{cell['psnr']:.2f} dB"
            row.append(f"{psnr} · {_kept(cell)} · {cell['fitted']}/{cell['faces']}")
        rows.append(row)
    return (
        _table(["every file at most", *map(codec_name, codecs)], rows) + "\n"
        "Cells: mean PSNR · identity kept · faces whose file fits; the means are over the faces that fit. AE and "
        "VAE through `compress_within` (one model each: latent size, quantiser and detail layer chosen per face); "
        "each classic codec at the highest quality whose file fits. Bold: the highest PSNR among the codecs whose "
        "file fits at least half of the faces.\n"
    )


def _fixed_latent_table(evaluation: dict) -> str:
    """The best single (model, latent size) for every face against compress_within's choice per face."""
    best: dict[int, dict] = {}
    for row in evaluation.get("budgets", []):
        if row["fitted"] == evaluation["codec_faces"] and row["psnr"] > best.get(row["max_bytes"], {}).get("psnr", -1):
            best[row["max_bytes"]] = row
    by_budget = _budget_rows(evaluation)
    rows = []
    for budget, row in sorted(best.items()):
        chosen = by_budget.get(budget, {}).get(row["model"])
        per_face = "–" if chosen is None else f"{chosen['psnr']:.2f} dB"
        rows.append(
            [
                f"{budget:,} bytes",
                f"{codec_name(row['model'])} at latent {row['latent']}",
                f"{row['psnr']:.2f} dB",
                per_face,
            ]
        )
    header = ["every file at most", "best single latent size", "its PSNR", "`compress_within`, same model"]
    return (
        _table(header, rows) + "\n"
        "One latent size for every face, at the finest quantiser that fits (the `budgets` part of the JSON), "
        "against `compress_within`, which chooses per face and adds the detail layer from about 110 bytes.\n"
    )


def _detail_table(evaluation: dict) -> str:
    detail = evaluation["rate_distortion"].get("detail", [])
    kinds = list(dict.fromkeys(r["model"] for r in detail))
    by_quality: dict[int, dict[str, dict]] = {}
    for row in detail:
        by_quality.setdefault(row["quality"], {})[row["model"]] = row
    header = ["quality"] + [
        f"{codec_name(k)} {col}" for k in kinds for col in ("bytes", "PSNR", "SSIM", "identity kept")
    ]
    rows = []
    for quality, cells in sorted(by_quality.items()):
        row = [str(quality)]
        for kind in kinds:
            r = cells.get(kind)
            row += ["–"] * 4 if r is None else [f"{r['bytes']:,.0f}", f"{r['psnr']:.2f}", f"{r['ssim']:.3f}", _kept(r)]
        rows.append(row)
    gaps = [r["bytes"] - r["estimated_bytes"] for r in detail]
    gap = (
        f" The real files are {min(gaps):.1f}–{max(gaps):.1f} bytes larger than the entropy model's estimate."
        if gaps
        else ""
    )
    return (
        _table(header, rows)
        + f"\nMean file size (bytes), PSNR (dB), SSIM and identity kept at each detail quality.{gap}\n"
    )


def _base_table(evaluation: dict) -> str:
    rows = []
    quantiser, codec_faces = None, None
    for r in evaluation["records"]:
        codec = r.get("codec") or {}
        quantiser, codec_faces = codec.get("quantiser", quantiser), codec.get("faces", codec_faces)
        identity = codec.get("identity")
        kept = "–" if identity is None else f"{_pct(identity['kept'])} ({identity['median_distance']:.2f})"
        rows.append(
            [
                codec_name(r["model"]),
                str(r["latent"]),
                f"{r['psnr']['mean']:.2f}",
                f"{r['ssim']['mean']:.3f}",
                f"{r['noisy']['psnr']['mean']:.2f}",
                f"{r['bytes']['real']:.1f} ({r['bytes']['estimated']:.1f})",
                f"{codec['psnr']['mean']:.2f}" if codec else "–",
                kept,
            ]
        )
    header = [
        "model",
        "latent",
        "PSNR",
        "SSIM",
        f"PSNR, input noise σ {evaluation['noise_sigma']}",
        "`.fcz` bytes (estimate)",
        "`.fcz` PSNR",
        "identity kept (median distance)",
    ]
    return (
        _table(header, rows) + "\n"
        f"PSNR (dB) and SSIM of the unquantised code on all {evaluation['faces']:,} validation faces. The `.fcz` "
        f"columns: base-layer files at quantiser {quantiser} on {codec_faces} faces, their mean size (the entropy "
        "model's estimate in brackets), PSNR, and identity kept with the median descriptor distance.\n"
    )


def _classic_floor(evaluation: dict) -> str:
    lowest: dict[str, dict] = {}
    for row in evaluation["rate_distortion"].get("classic", []):
        if row["format"] not in lowest or row["quality"] < lowest[row["format"]]["quality"]:
            lowest[row["format"]] = row
    rows = [
        [codec_name(fmt), str(r["quality"]), f"{r['bytes']:,.0f}", f"{r['psnr']:.2f}", _kept(r)]
        for fmt, r in lowest.items()
    ]
    return (
        _table(["codec", "quality", "mean bytes", "PSNR", "identity kept"], rows) + "\n"
        "Each classic codec at its lowest quality setting: the smallest files it makes on these crops.\n"
    )


def _sampler_table(latent_space: dict) -> str:
    models = latent_space.get("models", {})
    rows = [
        [
            codec_name(kind),
            "–" if m.get("kl_weight") is None else f"{m['kl_weight']:g}",
            f"{m['fd_dlib']['prior']:.3f}",
            f"{m['fd_dlib']['fitted']:.3f}",
            f"{m['fd_dlib']['prior_over_fitted']:.2f}",
            _pct(m["identity_256"]["kept"]),
        ]
        for kind, m in models.items()
    ]
    header = ["model", "KL weight", "FD-dlib, prior N(0, I)", "FD-dlib, fitted Gaussian", "prior / fitted"]
    text = _table([*header, "identity kept at latent 256"], rows) + "\n"
    text += (
        f"FD-dlib on {latent_space['fd_faces']:,} decoded samples against {latent_space['fd_faces']:,} validation "
        f"faces; two halves of the real faces against each other give {latent_space['real_halves_fd']:.3f}. "
        f"Identity kept at latent 256 on {latent_space['identity_faces']} validation faces."
    )
    if "ae" in models and "vae" in models:
        ratio = models["ae"]["fd_dlib"]["prior"] / models["vae"]["fd_dlib"]["prior"]
        text += f" The AE's prior samples score {ratio:.1f} times the VAE's."
    return text + "\n"


def _sweep_table(latent_space: dict) -> str:
    ladder = latent_space.get("ladder", [])
    rows = []
    for run in latent_space.get("sweep", []):
        psnr = run["validation_psnr"]
        rows.append(
            [
                Path(run["weights"]).parent.parent.name,
                f"{run['kl_weight']:g}",
                str(run["epochs"]),
                *(f"{psnr[str(k)]:.2f}" for k in ladder),
                _pct(run["identity_256"]["kept"]),
                f"{run['fd_dlib']['prior']:.3f}",
                f"{run['fd_dlib']['fitted']:.3f}",
                f"{run['fd_dlib']['prior_over_fitted']:.2f}",
            ]
        )
    header = ["run", "KL weight", "epochs", *(f"PSNR {k}" for k in ladder), "identity kept at 256"]
    header += ["FD-dlib prior", "FD-dlib fitted", "prior / fitted"]
    return (
        _table(header, rows) + "\n"
        f"Validation PSNR (dB) per latent size; FD-dlib on {latent_space.get('sweep_fd_faces', 0):,} samples and "
        f'faces; identity kept at latent 256 on {latent_space["identity_faces"]} faces. "epochs" counts started '
        "epochs.\n"
    )


def _edits_table(latent_space: dict, placement: bool = True) -> str:
    edits = sorted(latent_space.get("edits", {}).items(), key=lambda item: -item[1]["balanced_accuracy"])
    rows = [
        [
            name,
            f"{100 * e['balanced_accuracy']:.1f}%",
            _pct(e["flip_rate"]),
            _pct(e.get("flip_rate_other_model")),
            _pct(e["identity_kept"]),
            "yes" if e.get("meets_edit_targets") else "no",
        ]
        for name, e in edits
    ]
    header = ["direction", "balanced accuracy", "flips at 2σ", "flips, read by the AE", "identity kept at ±1σ"]
    faces = sorted({e["faces"] for _, e in edits})
    return (
        _table([*header, "meets the edit targets"], rows) + "\n"
        f"Balanced accuracy of each direction's classifier on held-out labelled faces; its edits on "
        f"{' / '.join(map(str, faces)) or 'no'} held-out faces: moved 2σ towards the other side, decoded, encoded "
        "again and classified (by the VAE's classifier, and by the AE's own for the same attribute), and moved ±1σ "
        "and compared with dlib. Edit targets: at least 70% flips and 80% identity kept."
        + (PLACEMENT_WORDS if placement else "")
        + "\n"
    )


PLACEMENT_WORDS = (
    " The explorer shows a direction by default when its accuracy is at least 85% and its edits meet the targets, "
    'under "More directions" when only the accuracy does, and not below 85% (`attributes.slider_placement`).'
)


def realism_rows(report: dict, only: tuple[str, ...] = ()) -> list[dict]:
    """Per set of pictures (those whose name ends with one of `only`; all when empty), the MSE and
    the sharp decoding side by side (weights/realism.json): how often a fresh classifier tells them
    from real faces (mean over seeds ± half their spread), their fine detail over real faces', and
    for pictures of a known face, PSNR and identity kept."""
    by_set: dict[str, dict[str, dict]] = {}
    for row in report.get("rows", []):
        if row["decoding"] != "none" and row["set"].endswith(only or ("",)):  # "none": realism_floor's row
            by_set.setdefault(row["set"], {})[row["decoding"]] = row
    columns = (  # text throughout: a table column holds one type, and "–" marks what was not measured
        ("told apart", _told),
        ("fine detail", lambda r: f"{r['detail_energy']:.2f}"),
        ("PSNR dB", lambda r: f"{r['psnr']:.2f}" if "psnr" in r else "–"),
        ("identity kept", lambda r: f"{r['identity_kept']:.0%}" if "identity_kept" in r else "–"),
    )
    rows = []
    for name, decodings in by_set.items():
        line: dict = {"pictures": name}
        for title, value in columns:
            for decoding, label in (("mse", "MSE"), ("sharp", "sharp")):
                if decoding in decodings:
                    line[f"{title} ({label})"] = value(decodings[decoding])
        rows.append(line)
    return rows


def told_apart(report: dict, set_name: str, decoding: str) -> str | None:
    """How often the classifier told that set's pictures from real faces, as realism_rows writes it."""
    row = next((r for r in report.get("rows", []) if (r["set"], r["decoding"]) == (set_name, decoding)), None)
    return None if row is None else _told(row)


REALISM_WORDS = (
    "Told apart: a small CNN, trained from scratch on 60% of each set, tells the other 40% from real faces this "
    "often (50%: it cannot tell). Fine detail: the share of grey-level power above a quarter of Nyquist, over real "
    "faces' (1: as much as real faces)."
)


def _told(row: dict) -> str:
    told = f"{row['classifier_accuracy']:.0%}"
    spread = row.get("classifier_accuracy_spread")
    return f"{told} ± {50 * spread:.0f}" if spread else told


def realism_floor(report: dict) -> str:
    """What the test gives for real faces against other real faces, as a sentence ('' without a report)."""
    real = next((r for r in report.get("rows", []) if r["decoding"] == "none"), None)
    if real is None:
        return ""
    return (
        f"{report['pictures']:,} pictures per set against as many real validation faces, classifier seeds "
        f"{', '.join(map(str, report['seeds']))}; real faces against other real faces: told apart {_told(real)}, "
        f"fine detail {real['detail_energy']:.2f}."
    )


def _realism_table(realism: dict) -> str:
    rows = realism_rows(realism)
    if not rows:
        return "Not measured yet: `python -m facecomp realism data/cache --json weights/realism.json`.\n"
    header = list(dict.fromkeys(key for row in rows for key in row))
    cells = [[row.get(key, "–") for key in header] for row in rows]
    return (
        _table(header, cells) + "\n"
        f"{realism_floor(realism)} {REALISM_WORDS} PSNR and identity kept where the pictures stand for known "
        "faces.\n"
    )


def _sharp_edits_table(realism: dict) -> str:
    if not realism.get("sharp_edits"):
        return (
            "Not measured: it needs a sharp decoding in `weights/` and `python -m facecomp realism ... --labels "
            "data/labels`.\n"
        )
    edits = _edits_table({"edits": realism["sharp_edits"]}, placement=False)
    return "The same measurement as above, every picture the sharp decoding of its code.\n\n" + edits


def render_results(evaluation: dict, latent_space: dict, realism: dict | None = None) -> str:
    """The whole text of docs/results.md."""
    sections = [
        ("FaceComp against the best classic codec", render_headline(evaluation)),
        ("Every file held to a byte budget", _budget_table(evaluation)),
        ("One latent size for every face", _fixed_latent_table(evaluation)),
        ("The detail layer's curve", _detail_table(evaluation)),
        ("Base layer per model and latent size", _base_table(evaluation)),
        ("Classic codecs at their smallest", _classic_floor(evaluation)),
        ("Random faces: the prior and the fitted sampler", _sampler_table(latent_space)),
        ("The VAE's KL-weight sweep", _sweep_table(latent_space)),
        ("Named sliders", _edits_table(latent_space)),
        ("Realism: the MSE and the sharp decoding", _realism_table(realism or {})),
        ("Named sliders on the sharp decoding", _sharp_edits_table(realism or {})),
    ]
    head = (
        "# Measured results\n\n"
        f"Generated by `python -m facecomp results` from `{EVALUATION.as_posix()}`, "
        f"`{LATENT_SPACE.as_posix()}` and `{REALISM.as_posix()}`. Do not edit: measure again (see "
        "[models.md](models.md) and [operations.md](operations.md)), then rerun the command.\n\n" + _setup(evaluation)
    )
    return head + "".join(f"\n## {title}\n\n{body}" for title, body in sections)


def _read_json(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def _readme_with(readme: str, headline: str) -> str:
    """README's text with the headline between its markers."""
    start = readme.find(BEGIN)
    end = readme.find(END, start + len(BEGIN)) if start >= 0 else -1
    if start < 0 or end < 0:
        raise ValueError(f"README.md has no {BEGIN} ... {END} block for the results table")
    return readme[: start + len(BEGIN)] + "\n" + headline + readme[end:]


def expected_docs(root: Path) -> dict[Path, str]:
    """Each generated file under `root` with the text it should have."""
    root = Path(root)
    evaluation, latent_space = _read_json(root / EVALUATION), _read_json(root / LATENT_SPACE)
    realism = _read_json(root / REALISM) if (root / REALISM).exists() else {}
    readme = (root / README).read_text(encoding="utf-8")
    return {
        root / RESULTS_DOC: render_results(evaluation, latent_space, realism),
        root / README: _readme_with(readme, render_headline(evaluation)),
    }


def stale_docs(root: Path) -> list[Path]:
    """The generated files whose text differs from what the JSON gives (or that are missing)."""
    return [
        path
        for path, text in expected_docs(root).items()
        if not path.exists() or path.read_text(encoding="utf-8") != text
    ]


def write_docs(root: Path) -> list[Path]:
    """Write docs/results.md and README's headline block; returns the files that changed."""
    written = []
    for path, text in expected_docs(root).items():
        if path.exists() and path.read_text(encoding="utf-8") == text:
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written
