"""Weights as safetensors (never pickle), a JSON model card beside each, SHA-256 checked on load."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from .codec.detail_coder import DetailCodec, coding_tensors, detail_codec
from .codec.fcz import LoadedModel
from .nets.autoencoder import FaceAE, ModelConfig, build_model
from .nets.detail import DetailConfig
from .nets.refiner import Refiner, RefinerConfig
from .spec import MODEL_KINDS
from .weight_files import card_path, detail_path, sha256_file, sharp_path, weights_path

RETRAIN_HINT = "see docs/models.md 'Retrain the shipped weights': python -m facecomp train --model {kind} --data DATA"


# The card field naming the earlier weights file whose codec (encoder, decoder, code
# statistics) this one shares unchanged.
CODEC_SHA_FIELD = "codec_sha256"

# Statistics older files carry that the model no longer has (age is now a named direction).
RETIRED_BUFFERS = {"age_direction"}


class WeightsError(RuntimeError):
    """Shipped weights are missing, altered or unreadable."""


def save_model(model: FaceAE, path: Path, card: dict | None = None) -> dict:
    """Write the weights and, when a card is given, the card with the file's SHA-256."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Large tensors as float16 keep each file under 25 MB; they load back as float32.
    state = {
        k: (v.detach().half() if v.is_floating_point() and v.numel() > 4096 else v.detach()).contiguous().cpu()
        for k, v in model.state_dict().items()
    }
    save_file(state, str(path), metadata={"config": json.dumps(model.cfg.to_dict())})
    if card is None:
        return {}
    return write_card(path, card, model.cfg.to_dict())


def write_card(path: Path, card: dict, config: dict | None = None) -> dict:
    """Write `card` beside the weights file `path` (the same name, .json) and return it. Given the
    weights' `config`, the card also records it and names the file and its SHA-256, as every shipped
    card does (the training cards of train-detail's checkpoints go without)."""
    if config is not None:
        card = dict(card, config=config, weights_file=path.name, sha256=sha256_file(path))
    path.with_suffix(".json").write_text(json.dumps(card, indent=2) + "\n")
    return card


def read_model(path: Path, config: dict | None = None) -> FaceAE:
    """Build a model from a safetensors file (config from the card or the file's metadata)."""
    with safe_open(str(path), framework="pt") as fh:
        meta = fh.metadata() or {}
    cfg = ModelConfig.from_dict(config or json.loads(meta["config"]))
    state = {
        k: v.float() if v.is_floating_point() else v
        for k, v in load_file(str(path)).items()
        if k not in RETIRED_BUFFERS
    }
    # Built on the meta device (no memory, no random initialisation that the file's tensors would
    # only overwrite: ~0.1 s of the app's first page), then given the file's tensors.
    with torch.device("meta"):
        model = build_model(cfg)
    if not set(model.state_dict()) <= set(state):
        # A file written before a statistic existed still loads (as the start of a fine-tune):
        # a missing fitted buffer keeps its neutral default until `fit-latents` fills it.
        model = build_model(cfg)
    parameters = {name for name, _ in model.named_parameters()}
    result = model.load_state_dict(state, strict=False, assign=True)
    if result.unexpected_keys or parameters & set(result.missing_keys):
        raise RuntimeError(f"{path}: unexpected {result.unexpected_keys}, missing {result.missing_keys}")
    return model.eval()


def export_detail(checkpoint: Path, weights_dir: Path | None = None) -> dict:
    """Ship a trained detail layer: its weights in half precision (the decoder runs in float32;
    the difference is < 0.01 dB), the coder's probability tables beside them, and a card."""
    state, meta = tensors_from_file(checkpoint)
    cfg = DetailConfig.from_dict(json.loads(meta["config"]))
    path = detail_path(cfg.base_kind, weights_dir)
    tensors = {k: v.half() if v.is_floating_point() else v for k, v in state.items()} | coding_tensors()
    save_file(
        {k: v.contiguous() for k, v in tensors.items()}, str(path), metadata={"config": json.dumps(cfg.to_dict())}
    )
    training = json.loads(checkpoint.with_suffix(".json").read_text())
    return write_card(path, {"training": training}, cfg.to_dict())


def load_detail(kind: str, weights_dir: Path | None = None) -> DetailCodec | None:
    """The detail layer on top of the `kind` model, checked against its card; None if not shipped."""
    path = detail_path(kind, weights_dir)
    if not path.exists():
        return None
    card = json.loads(path.with_suffix(".json").read_text())
    actual = sha256_file(path)
    if actual != card["sha256"]:
        raise WeightsError(f"detail weights {path} do not match their card (SHA-256 {actual[:12]}...)")
    try:
        return detail_codec(DetailConfig.from_dict(card["config"]), load_file(str(path)), actual)
    except (OSError, RuntimeError, KeyError, ValueError) as err:
        raise WeightsError(f"cannot load {path}: {err}") from err


def save_refiner(refiner: Refiner, path: Path, card: dict) -> dict:
    """The sharp decoding's refiner in half precision (it runs in float32) beside its card."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().half().contiguous().cpu() for k, v in refiner.state_dict().items()}
    save_file(state, str(path), metadata={"config": json.dumps(refiner.cfg.to_dict())})
    return write_card(path, card, refiner.cfg.to_dict())


def load_refiner(weights_dir: Path | None = None) -> Refiner | None:
    """The sharp decoding's refiner, checked against its card; None if not shipped."""
    path = sharp_path(weights_dir)
    if not path.exists():
        return None
    try:
        card = json.loads(path.with_suffix(".json").read_text())
    except (OSError, ValueError) as err:
        raise WeightsError(f"the card of {path} cannot be read: {err}") from err
    actual = sha256_file(path)
    if actual != card["sha256"]:
        raise WeightsError(f"sharp weights {path} do not match their card (SHA-256 {actual[:12]}...)")
    try:
        refiner = Refiner(RefinerConfig(**card["config"]))
        refiner.load_state_dict({k: v.float() for k, v in load_file(str(path)).items()})
    except (OSError, RuntimeError, KeyError, TypeError) as err:
        raise WeightsError(f"cannot load {path}: {err}") from err
    return refiner.eval().requires_grad_(False)


def load_card(kind: str, weights_dir: Path | None = None) -> dict:
    path = card_path(kind, weights_dir)
    if not path.exists():
        raise WeightsError(f"model card {path} is missing; {RETRAIN_HINT.format(kind=kind)}")
    return json.loads(path.read_text())


def measured_weights(kind: str, weights_dir: Path | None = None) -> dict[str, str | None]:
    """What a model's measured numbers depend on, from its cards: the codec's SHA-256 (the one its
    .fcz files name: a refit of the sliders alone keeps it) and the detail layer's (None where
    load_detail finds no detail weights). `evaluate` records it beside its numbers; Benchmarks
    compares it with the weights in the folder."""
    card = load_card(kind, weights_dir)
    detail = detail_path(kind, weights_dir)
    try:
        return {
            "codec_sha256": card.get(CODEC_SHA_FIELD) or card["sha256"],
            "detail_sha256": json.loads(detail.with_suffix(".json").read_text())["sha256"] if detail.exists() else None,
        }
    except (OSError, KeyError, ValueError) as err:  # ValueError: a card that is not JSON
        raise WeightsError(f"the {kind.upper()} cards do not name their weights' SHA-256: {err!r}") from err


def load_model(kind: str, weights_dir: Path | None = None) -> tuple[LoadedModel, dict]:
    """The shipped model of `kind` (network, detail layer, the SHA-256 its files name) and its card,
    after checking the weights' SHA-256."""
    path = weights_path(kind, weights_dir)
    card = load_card(kind, weights_dir)
    if not path.exists():
        raise WeightsError(f"weights file {path} is missing; {RETRAIN_HINT.format(kind=kind)}")
    actual = sha256_file(path)
    if actual != card["sha256"]:
        raise WeightsError(
            f"weights file {path} does not match its model card (SHA-256 {actual[:12]}..., "
            f"expected {card['sha256'][:12]}...); restore it or {RETRAIN_HINT.format(kind=kind)}"
        )
    try:
        network = read_model(path, card["config"])
    except (OSError, RuntimeError, KeyError, ValueError) as err:
        raise WeightsError(f"cannot load {path}: {err}") from err
    # .fcz files name the weights whose codec made them; a refit of the named directions
    # alone keeps the codec and so the name (latent.statistics.fit_and_save).
    return LoadedModel(network, load_detail(kind, weights_dir), card.get(CODEC_SHA_FIELD) or actual), card


def load_models(
    weights_dir: Path | None = None, kinds: Iterable[str] = MODEL_KINDS
) -> tuple[dict[str, LoadedModel], dict[str, dict]]:
    """The models of `kinds` (default: all) and their cards, by kind, each checked as in load_model."""
    models, cards = {}, {}
    for kind in kinds:
        models[kind], cards[kind] = load_model(kind, weights_dir)
    return models, cards


def tensors_to_file(tensors: dict[str, torch.Tensor], path: Path, metadata: dict) -> None:
    """Save a flat dict of tensors with JSON metadata (used for resumable checkpoints)."""
    save_file({k: v.contiguous().cpu() for k, v in tensors.items()}, str(path), metadata={"json": json.dumps(metadata)})


def tensors_from_file(path: Path) -> tuple[dict[str, torch.Tensor], dict]:
    with safe_open(str(path), framework="pt") as fh:
        meta = json.loads((fh.metadata() or {})["json"])
    return load_file(str(path)), meta
