"""The realism report: every kind of picture FaceComp draws, decoded both ways (MSE and sharp),
scored for realism (facecomp.measure.realism) beside PSNR and identity kept.

`python -m facecomp realism DATA --json weights/realism.json` writes it. Real faces and the faces
pictures are made from are disjoint validation faces, so a reconstruction is never compared with
its own original.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from functools import cache
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from ..codec.budget import best_within
from ..codec.fcz import LoadedModel
from ..codec.pictures import preview_decode
from ..data import CropCache
from ..latent.explorer import editor_directions, slerp
from ..nets.refiner import Refiner, sharpen
from ..spec import EVALUATED_BUDGETS, LATENT_LADDER, SAME_PERSON
from ..weight_files import default_weights_dir
from . import identity, realism
from .latent_report import EDIT_SIGMAS, load_latent_space_report
from .metrics import psnr

PICTURES = 1000  # per set, against as many real faces


def split_faces(data: Path, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(real, source): n validation faces to compare with, and up to n others to make pictures from,
    as float (N, 3, 128, 128) in [0, 1], by a fixed permutation."""
    images = CropCache(data, "val").load_all()
    order = torch.randperm(len(images), generator=torch.Generator().manual_seed(0))
    return images[order[:n]].float() / 255, images[order[n : 2 * n]].float() / 255


def _codes(model: LoadedModel, faces: torch.Tensor) -> torch.Tensor:
    with torch.inference_mode():
        return torch.cat([model.network.code(faces[i : i + 128]).float() for i in range(0, len(faces), 128)])


def _decode(model: LoadedModel, codes: torch.Tensor) -> torch.Tensor:
    return torch.cat([preview_decode(model.network, codes[i : i + 200]) for i in range(0, len(codes), 200)])


def picture_sets(
    models: Mapping[str, LoadedModel], source: torch.Tensor, edits: dict | None, budgets: tuple[int, ...]
) -> dict[str, tuple[Callable[[], torch.Tensor], torch.Tensor | None]]:
    """name -> (a function making the MSE pictures, the originals they stand for or None)."""
    n, sets = len(source), {}

    @cache
    def codes(kind: str) -> torch.Tensor:  # each model encodes the source faces once, for every set
        return _codes(models[kind], source)

    for kind, model in models.items():
        gen = torch.Generator().manual_seed(0)
        for src in ("prior", "fitted"):
            sampled = model.network.sample_codes(n, src, 1.0, gen)
            sets[f"{kind} {src} samples"] = (lambda m=model, c=sampled: _decode(m, c), None)
        for latent in LATENT_LADDER:
            sets[f"{kind} reconstruction {latent}"] = (
                lambda m=model, k=latent: _decode(m, codes(m.kind)[:, :k]),
                source,
            )
        for max_bytes in budgets:
            sets[f"{kind} file <= {max_bytes} B"] = (
                lambda m=model, b=max_bytes: torch.stack([best_within({m.kind: m}, x, b)[1] for x in source]),
                source,
            )
    vae = models["vae"]
    shown, _ = editor_directions(vae.network, edits)
    sets["vae +2 sigma slider edits"] = (lambda: _decode(vae, _edited(codes("vae"), shown)), None)
    sets["vae morph midpoints"] = (lambda: _decode(vae, _midpoints(codes("vae"), vae)), None)
    return sets


def _edited(codes: torch.Tensor, shown: list) -> torch.Tensor:
    """Each code moved +2 sigma along one shown slider, the sliders taken in turn."""
    out = codes.clone()
    for i in range(len(codes)):
        d = shown[i % len(shown)]
        out[i] += EDIT_SIGMAS * d.std * d.vector
    return out


def _midpoints(codes: torch.Tensor, vae: LoadedModel) -> torch.Tensor:
    """The middle of the explorer's morph from each face to the next one."""
    centre = vae.network.latent_mean.float()
    return torch.stack([slerp(codes[i], codes[(i + 1) % len(codes)], 0.5, centre) for i in range(len(codes))])


def _faithfulness(pictures: torch.Tensor, originals: torch.Tensor | None, original_desc: np.ndarray | None) -> dict:
    if originals is None:
        return {}
    dist = identity.distances(identity.descriptors(pictures), original_desc)
    return {
        "psnr": float(np.mean([psnr(p, o) for p, o in zip(pictures, originals)])),
        "identity_kept": float((dist < SAME_PERSON).mean()),
    }


def realism_report(
    models: Mapping[str, LoadedModel],
    refiner: Refiner | None,
    data: Path,
    pictures: int = PICTURES,
    seeds: tuple[int, ...] = realism.SEEDS,
    budgets: tuple[int, ...] = EVALUATED_BUDGETS,
    only: tuple[str, ...] = (),
    weights_dir: Path | None = None,
) -> dict:
    """Per set of pictures and decoding: the two-sample test over `seeds`, fine-detail energy,
    and where the pictures stand for real faces, PSNR and identity kept. `only`: set names to
    measure (all when empty). The first row compares the real faces with the faces the pictures
    are made from: the test's floor at this size."""
    real, source = split_faces(data, pictures)
    edits = load_latent_space_report(weights_dir or default_weights_dir()).get("edits")
    source_desc = identity.descriptors(source)
    rows = [{"set": "real faces", "decoding": "none"} | realism.realism(real, source, seeds)]
    sets = picture_sets(models, source, edits, budgets)
    for name, (make, originals) in tqdm(sets.items(), desc="realism", unit="set"):
        if only and name not in only:
            continue
        mse = make()
        decodings = {"mse": mse} | ({"sharp": sharpen(refiner, mse)} if refiner is not None else {})
        for decoding, pics in decodings.items():
            row = {"set": name, "decoding": decoding} | realism.realism(real, pics, seeds)
            rows.append(row | _faithfulness(pics, originals, source_desc))
    real_share = float(realism.detail_share(real).mean())
    return {"pictures": pictures, "seeds": list(seeds), "real_detail_share": real_share, "rows": rows}


REPORT_FILE = "realism.json"


def load_realism_report(weights_dir: Path | None = None) -> dict:
    """The committed realism report beside the weights, or {} when there is none."""
    path = Path(weights_dir or default_weights_dir()) / REPORT_FILE
    return json.loads(path.read_text()) if path.exists() else {}
