"""Train detail layers (facecomp.nets.detail) on top of the frozen base models.

One process trains one detail layer per base ("ae", "vae", and "" for the standalone
codec docs/models.md compares against), taking turns step by step so that all of them see
the same wall-clock budget. The schedule runs on elapsed time, not steps: the same
command fits a 2-core laptop or a GPU lent for minutes.

    python -m facecomp train-detail --data data/cache --out runs/detail --minutes 60
"""

from __future__ import annotations

import json
import math
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

from ..nets.autoencoder import FaceAE
from ..nets.detail import DetailConfig, DetailLayer, trained_qualities
from ..weights import load_models, tensors_from_file, tensors_to_file, write_card
from .common import CardNames, autocast, cosine_decay, elapsed_fraction, load_crops, pick_device, training_card

LR_FLOOR = 0.1  # the learning rate's cosine ends at this fraction of the peak
# The detail cards' names for what every training card records (common.CardNames).
CARD_NAMES = CardNames(minutes="minutes", hardware="device", source=None, digits=2)


@dataclass
class DetailTrainConfig:
    data: Path = Path("data/cache")  # the prepared crop cache (python -m facecomp prepare)
    out: Path = Path("runs/detail")  # checkpoints: detail-<base>.safetensors, each with its card
    bases: tuple[str, ...] = ("ae", "vae", "")  # one layer per base model; "" is the standalone codec
    weights: Path | None = None  # base weights folder (default: the shipped ones)
    minutes: float = 60.0  # wall-clock budget; the learning-rate schedule follows it
    batch: int = 32  # crops per step (each layer trains on the same batch)
    lr: float = 2e-4  # Adam's peak learning rate
    warmup_steps: int = 300  # the learning rate ramps up linearly over these steps
    checkpoint_seconds: float = 120.0  # seconds between checkpoints
    seed: int = 0  # initialisation, batches, augmentation
    device: str = field(default_factory=lambda: pick_device(mps=False).type)  # "cuda" if there is one, else "cpu"
    detail: DetailConfig = field(default_factory=DetailConfig)  # the layers' architecture (base_kind per base)
    # Fine-tuning: start from trained checkpoints (out/detail-<base>.safetensors of an earlier
    # run) and add gains for lower lambdas, training those gains alone with the network frozen.
    resume: Path | None = None  # the earlier run's out folder
    lower_lambdas: tuple[float, ...] = ()  # the lambdas to add below the trained ones


class FrozenBase:
    """A base model and the quantiser the detail layer sits on: x -> (x_b, base symbols)."""

    def __init__(self, model: FaceAE, latent: int, q: int, device: str) -> None:
        from ..codec.entropy import base_quantiser

        self.model = model.to(device).eval().requires_grad_(False)
        self.latent = latent
        mean, _, steps = base_quantiser(model, latent, q)
        self.mean = torch.tensor(mean, dtype=torch.float32, device=device)
        self.steps = torch.tensor(steps, dtype=torch.float32, device=device)

    @torch.no_grad()
    def __call__(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        from ..codec.entropy import SYMBOL_BOUND

        code = self.model.code(x)[:, : self.latent].float()
        symbols = torch.round((code - self.mean) / self.steps).clamp(-SYMBOL_BOUND, SYMBOL_BOUND)
        base = self.model.decode(self.mean + symbols * self.steps).float().clamp(0, 1)
        return base, symbols


def augment(batch: torch.Tensor, generator: random.Random) -> torch.Tensor:
    """Per-image horizontal flips and one small shift per batch (reflect-padded)."""
    x = batch.float() / 255
    flip = torch.rand(len(x), device=x.device) < 0.5
    x = torch.where(flip[:, None, None, None], x.flip(3), x)
    dy, dx = generator.randint(0, 8), generator.randint(0, 8)
    x = F.pad(x, (4, 4, 4, 4), mode="reflect")
    return x[:, :, dy : dy + 128, dx : dx + 128]


def lr_at(cfg: DetailTrainConfig, step: int, progress: float) -> float:
    """Linear warm-up over the first steps, times a cosine decay to LR_FLOOR over the time budget."""
    warm = min(1.0, (step + 1) / cfg.warmup_steps)
    return cfg.lr * warm * cosine_decay(progress, LR_FLOOR)


@dataclass
class Run:
    """One detail layer in training: its base, network, optimiser and running statistics."""

    name: str
    base: FrozenBase | None
    layer: DetailLayer
    optimizer: torch.optim.Optimizer
    stats: dict = field(default_factory=lambda: {"loss": 0.0, "bpp": 0.0, "mse": 0.0, "n": 0})


# Setting up ---------------------------------------------------------------------------------------


def with_lower_lambdas(layer: DetailLayer, lower: tuple[float, ...]) -> DetailLayer:
    """Weight surgery: the same network with gain rows for `lower` lambdas prepended, each
    started where a per-channel line through the trained log-gains (against log lambda) points."""
    cfg = DetailConfig.from_dict({**layer.cfg.to_dict(), "lambdas": tuple(lower) + layer.cfg.lambdas})
    grown = DetailLayer(cfg)
    state = layer.state_dict()
    log_lam = torch.tensor(layer.cfg.lambdas).log()
    new_log_lam = torch.tensor(lower).log()
    for key in ("log_gain", "log_inv_gain"):
        rows = state[key].float()
        centred = log_lam - log_lam.mean()
        slope = (centred[:, None] * (rows - rows.mean(0))).sum(0) / centred.pow(2).sum()
        extrapolated = rows.mean(0) + (new_log_lam - log_lam.mean())[:, None] * slope
        state[key] = torch.cat([extrapolated, rows])
    grown.load_state_dict(state)
    return grown


def _start_layer(cfg: DetailTrainConfig, name: str, detail: DetailConfig) -> DetailLayer:
    if cfg.resume is None:
        return DetailLayer(detail)
    state, meta = tensors_from_file(cfg.resume / f"detail-{name}.safetensors")
    layer = DetailLayer(DetailConfig.from_dict(json.loads(meta["config"])))
    layer.load_state_dict({k: v.float() for k, v in state.items()})
    return with_lower_lambdas(layer, cfg.lower_lambdas) if cfg.lower_lambdas else layer


def _optimizer(cfg: DetailTrainConfig, layer: DetailLayer) -> torch.optim.Optimizer:
    if not cfg.lower_lambdas:
        return torch.optim.Adam(layer.parameters(), lr=cfg.lr)
    # Only the new gain rows learn: a hook zeroes the gradient of the trained rows.
    new = len(cfg.lower_lambdas)
    layer.requires_grad_(False)
    for gain in (layer.log_gain, layer.log_inv_gain):
        gain.requires_grad_(True)
        gain.register_hook(lambda grad: torch.cat([grad[:new], torch.zeros_like(grad[new:])]))
    return torch.optim.Adam([layer.log_gain, layer.log_inv_gain], lr=cfg.lr)


def build_runs(cfg: DetailTrainConfig) -> list[Run]:
    models, _ = load_models(cfg.weights, [kind for kind in cfg.bases if kind])
    runs = []
    for kind in cfg.bases:
        name = kind or "standalone"
        detail = DetailConfig.from_dict({**cfg.detail.to_dict(), "base_kind": kind})
        base = FrozenBase(models[kind].network, detail.base_latent, detail.base_q, cfg.device) if kind else None
        layer = _start_layer(cfg, name, detail).to(cfg.device).to(memory_format=torch.channels_last)
        runs.append(Run(name, base, layer, _optimizer(cfg, layer)))
    return runs


# Training -----------------------------------------------------------------------------------------


def train_detail(cfg: DetailTrainConfig) -> list[Path]:
    """Train until cfg.minutes have passed; returns the final checkpoints, one per base."""
    torch.manual_seed(cfg.seed)
    rng = random.Random(cfg.seed)
    cfg.out.mkdir(parents=True, exist_ok=True)
    if cfg.device == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    crops = load_crops(cfg.data).contiguous().to(cfg.device)
    runs = build_runs(cfg)
    bf16 = autocast(cfg.device, on_gpu=True)
    qualities = trained_qualities(runs[0].layer.cfg)
    if cfg.lower_lambdas:  # fine-tuning new gains: train at their qualities only
        qualities = qualities[: len(cfg.lower_lambdas)]
    trained = torch.tensor(qualities, device=cfg.device)
    start = last_save = time.time()
    step = 0
    print(f"{len(crops)} training crops on {cfg.device}; runs: {[r.name for r in runs]}", flush=True)
    while True:
        progress = elapsed_fraction(start, cfg.minutes)
        if progress >= 1.0:
            return checkpoint(runs, cfg, step, (time.time() - start) / 60, len(crops))
        if time.time() - last_save > cfg.checkpoint_seconds:
            checkpoint(runs, cfg, step, (time.time() - start) / 60, len(crops))
            last_save = time.time()
        lr = lr_at(cfg, step, progress)
        idx = torch.randint(len(crops), (cfg.batch,), device=cfg.device)
        x = augment(crops[idx], rng).contiguous(memory_format=torch.channels_last)
        batch_qualities = trained[torch.randint(len(trained), (cfg.batch,), device=cfg.device)]
        for run in runs:
            train_step(run, x, batch_qualities, lr, bf16)
        step += 1


def train_step(run: Run, x: torch.Tensor, qualities: torch.Tensor, lr: float, bf16: torch.autocast) -> None:
    """One step of one layer on the batch `x` at per-image `qualities`; adds its loss terms to run.stats."""
    if run.base is None:
        base, symbols = torch.zeros_like(x), torch.zeros(len(x), run.layer.cfg.base_latent, device=x.device)
    else:
        with bf16:
            base, symbols = run.base(x)
    for group in run.optimizer.param_groups:
        group["lr"] = lr
    with bf16:
        out = run.layer(x, base, symbols, qualities)
    terms = run.layer.loss(out, qualities)
    run.optimizer.zero_grad(set_to_none=True)
    terms["loss"].backward()
    torch.nn.utils.clip_grad_norm_(run.layer.parameters(), 1.0)
    run.optimizer.step()
    for key in ("loss", "bpp", "mse"):  # summed on the device: no synchronisation per step
        run.stats[key] = run.stats[key] + terms[key].detach()
    run.stats["n"] += 1


# Checkpoints --------------------------------------------------------------------------------------


def checkpoint(runs: list[Run], cfg: DetailTrainConfig, step: int, minutes: float, crops: int) -> list[Path]:
    """Every layer's weights and card (see save_run), then its running statistics start again."""
    paths = []
    for run in runs:
        card = _card(run, cfg, step, minutes, crops)
        paths.append(save_run(run, cfg.out, card))
        print(f"step {step} {run.name}: loss {card['last_loss']:.4f} bpp {card['last_bpp']:.4f}", flush=True)
        run.stats = {"loss": 0.0, "bpp": 0.0, "mse": 0.0, "n": 0}
    return paths


def save_run(run: Run, out: Path, card: dict) -> Path:
    """Half-precision weights (the decoder runs in float32; the difference is < 0.01 dB) and a card."""
    path = out / f"detail-{run.name}.safetensors"
    tensors = {k: v.detach().half().cpu().contiguous() for k, v in run.layer.state_dict().items()}
    tensors_to_file(tensors, path, {"config": json.dumps(run.layer.cfg.to_dict())})
    write_card(path, card)
    return path


def _card(run: Run, cfg: DetailTrainConfig, step: int, minutes: float, crops: int) -> dict:
    """What a checkpoint's card says: the run's progress and its running averages since the last one."""
    s, n = run.stats, max(run.stats["n"], 1)
    fields = {
        "base": run.name,
        "steps": step,
        "batch": cfg.batch,
        "train_crops": crops,
        "last_loss": float(s["loss"]) / n,
        "last_bpp": float(s["bpp"]) / n,
        "last_psnr_mixed_qualities": -10 * math.log10(max(float(s["mse"]) / n, 1e-12)),
    }
    if cfg.resume is not None:  # the card keeps the history of a fine-tuned layer
        fields["started_from"] = json.loads((cfg.resume / f"detail-{run.name}.json").read_text())
    config = {k: str(v) for k, v in asdict(cfg).items() if k != "detail"}
    return training_card(CARD_NAMES, config, minutes, cfg.device, **fields)
