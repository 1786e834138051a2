"""Training loop for the AE and the VAE: one flat function, read top to bottom.

Each step masks every sample's latent to a random size from the ladder (nested
dropout), so one model learns all sizes. Checkpoints are safetensors holding the
model, the optimiser state and the loop position, so an interrupted run resumes.
"""

from __future__ import annotations

import json
import math
import os
import platform
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from tqdm import tqdm

from .data import CropCache
from .latents import fit_and_save
from .model import LATENT_LADDER, FaceAE, ModelConfig, build_model, sample_prefix
from .weights import read_model, save_model, sha256_file, tensors_from_file, tensors_to_file

# Chosen from the sweep in the README: the most face-like prior samples, no PSNR lost yet.
DEFAULT_KL_WEIGHT = 0.016
VAL_FACES = 512  # validation subset scored every epoch (the full split at the end)


@dataclass
class TrainConfig:
    model: str = "ae"
    data: str = "data/cache"
    out: str = "runs"
    epochs: int = 30
    batch_size: int = 64
    lr: float = 2e-3
    kl_weight: float | None = None
    log_mse: bool = False
    l1: float = 0.0
    l2: float = 0.0
    noise_sigma: float = 0.0
    init_from: str | None = None
    max_minutes: float | None = None
    seed: int = 0
    limit: int | None = None
    channels: tuple[int, ...] = ModelConfig.channels
    max_latent: int = 512


def pick_device() -> torch.device:
    if torch.cuda.is_available():
        return torch.device("cuda")
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def to_float(batch: torch.Tensor, device: torch.device) -> torch.Tensor:
    x = batch.to(device, non_blocking=True).float().div_(255)
    return x.contiguous(memory_format=torch.channels_last) if device.type == "cpu" else x


@torch.inference_mode()
def validate(model: FaceAE, images: torch.Tensor, device: torch.device, ladder=LATENT_LADDER) -> dict[int, float]:
    """Mean PSNR per latent size on uint8 images (deterministic: the VAE uses its mean)."""
    model.eval()
    totals = {k: 0.0 for k in ladder}
    for start in range(0, len(images), 128):
        x = to_float(images[start : start + 128], device)
        with torch.autocast(device.type, torch.bfloat16, enabled=device.type == "cpu"):
            code = model.code(x)
        for k in ladder:
            with torch.autocast(device.type, torch.bfloat16, enabled=device.type == "cpu"):
                recon = model.decode(code[:, :k]).float()
            mse = (recon - x).pow(2).flatten(1).mean(1).clamp_min(1e-10)
            totals[k] += (10 * torch.log10(1 / mse)).sum().item()
    model.train()
    return {k: totals[k] / len(images) for k in ladder}


def _weight_penalty(model: torch.nn.Module, l1: float, l2: float) -> torch.Tensor:
    weights = [p for p in model.parameters() if p.ndim > 1]
    penalty = torch.zeros((), device=weights[0].device)
    if l1:
        penalty = penalty + l1 * sum(w.abs().sum() for w in weights)
    if l2:
        penalty = penalty + l2 * sum(w.pow(2).sum() for w in weights)
    return penalty


def _save_checkpoint(path: Path, model: FaceAE, opt: torch.optim.Optimizer, meta: dict) -> None:
    tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
    opt_state = opt.state_dict()
    for idx, state in opt_state["state"].items():
        for key, value in state.items():
            tensors[f"opt.{idx}.{key}"] = torch.as_tensor(value)
    meta = dict(meta, param_groups=opt_state["param_groups"], model_config=model.cfg.to_dict())
    tmp = path.with_suffix(".tmp")
    tensors_to_file(tensors, tmp, meta)
    os.replace(tmp, path)  # atomic: an interruption never leaves half a checkpoint


def _load_checkpoint(path: Path, model: FaceAE, opt: torch.optim.Optimizer) -> dict:
    tensors, meta = tensors_from_file(path)
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    state: dict[int, dict] = {}
    for key, value in tensors.items():
        if key.startswith("opt."):
            _, idx, name = key.split(".", 2)
            state.setdefault(int(idx), {})[name] = value
    opt.load_state_dict({"state": state, "param_groups": meta["param_groups"]})
    return meta


def _init_note(init_from: str | None) -> dict | None:
    """What a fine-tuned model started from: its weights' hash and their own training time."""
    if not init_from:
        return None
    path = Path(init_from)
    card_file = path.with_suffix(".json")
    source_card = json.loads(card_file.read_text()) if card_file.exists() else {}
    return {
        "weights": path.name,
        "sha256": sha256_file(path),
        "total_training_minutes": source_card.get("total_training_minutes", source_card.get("training_minutes")),
        "total_epochs": source_card.get("total_epochs", source_card.get("epochs")),
    }


def _hardware(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)}, cuda"
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:  # Linux: platform.processor() is often empty there
            cpu = next((line.split(":", 1)[1].strip() for line in fh if line.startswith("model name")), cpu)
    except OSError:
        pass
    return f"{cpu}, {torch.get_num_threads()} threads, {device.type}"


def train(cfg: TrainConfig) -> Path:
    """Train, keep the best checkpoint by validation PSNR, write weights + card to cfg.out."""
    torch.manual_seed(cfg.seed)
    device = pick_device()
    out = Path(cfg.out) / cfg.model
    out.mkdir(parents=True, exist_ok=True)
    kl_weight = cfg.kl_weight if cfg.kl_weight is not None else DEFAULT_KL_WEIGHT
    if cfg.model == "ae":
        kl_weight = 0.0

    train_images = CropCache(Path(cfg.data), "train").load_all()
    if cfg.limit:
        train_images = train_images[: cfg.limit]
    val_images = CropCache(Path(cfg.data), "val").load_all()
    val_subset = val_images[:VAL_FACES]

    model_cfg = ModelConfig(kind=cfg.model, max_latent=cfg.max_latent, channels=tuple(cfg.channels))
    model = build_model(model_cfg)
    if cfg.init_from:
        # The VAE starts from the AE: same trunk, the AE's code becomes the VAE's mean.
        source = read_model(Path(cfg.init_from)).state_dict()
        own = model.state_dict()
        for key, value in source.items():
            if key == "encoder.head.weight" or key == "encoder.head.bias":
                own[key][: value.shape[0]] = value
                if cfg.model == "vae":
                    own[key][value.shape[0] :] = 0.0  # logvar starts at 0
                    if key.endswith("bias"):
                        own[key][value.shape[0] :] = -4.0  # small posterior noise at first
            elif key in own and own[key].shape == value.shape:
                own[key] = value
        model.load_state_dict(own)
    model.to(device)
    if device.type == "cpu":
        model = model.to(memory_format=torch.channels_last)
    decay, no_decay = [], []
    for p in model.parameters():
        (decay if p.ndim > 1 else no_decay).append(p)
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": 1e-5}, {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr
    )

    steps_per_epoch = max(1, len(train_images) // cfg.batch_size)
    total_steps = cfg.epochs * steps_per_epoch
    warmup = min(500, total_steps // 10)

    def lr_at(step: int) -> float:
        if step < warmup:
            return cfg.lr * (step + 1) / warmup
        progress = (step - warmup) / max(1, total_steps - warmup)
        if cfg.max_minutes:
            # A time budget: the cosine ends at the deadline even on a busy machine.
            progress = max(progress, (time.time() - started) / (60 * cfg.max_minutes))
        return cfg.lr * (0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))

    last_path, best_path = out / "last.ckpt.safetensors", out / "best.safetensors"
    meta = {"epoch": 0, "step": 0, "best_psnr": -1.0, "history": [], "seconds": 0.0, "train_config": asdict(cfg)}
    if last_path.exists():
        meta = _load_checkpoint(last_path, model, opt)
        print(f"resuming {cfg.model} from epoch {meta['epoch']} (step {meta['step']})")

    gen = torch.Generator().manual_seed(cfg.seed)
    autocast = torch.autocast(device.type, torch.bfloat16, enabled=device.type == "cpu")
    started = time.time() - meta["seconds"]
    stop_early = False
    for epoch in range(meta["epoch"], cfg.epochs):
        gen.manual_seed(cfg.seed * 1000 + epoch)  # the same order after a resume
        order = torch.randperm(len(train_images), generator=gen)
        model.train()
        running = None
        bar = tqdm(range(steps_per_epoch), desc=f"{cfg.model} epoch {epoch + 1}/{cfg.epochs}", unit="batch")
        sums: dict[str, float] = {}
        for i in bar:
            step = epoch * steps_per_epoch + i
            for group in opt.param_groups:
                group["lr"] = lr_at(step)
            batch = train_images[order[i * cfg.batch_size : (i + 1) * cfg.batch_size]]
            if torch.rand((), generator=gen) < 0.5:
                batch = batch.flip(3)  # faces are near-symmetric: free augmentation
            target = to_float(batch, device)
            inputs = target
            if cfg.noise_sigma:
                inputs = (target + cfg.noise_sigma * torch.randn_like(target)).clamp(0, 1)
            k = sample_prefix(len(target), model.cfg.ladder, gen).to(device)
            with autocast:
                result = model(inputs, k)
            terms = model.loss(result, target, kl_weight, cfg.log_mse)
            loss = terms["total"]
            if cfg.l1 or cfg.l2:
                terms["weight_penalty"] = _weight_penalty(model, cfg.l1, cfg.l2)
                loss = loss + terms["weight_penalty"]
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            for name, value in terms.items():
                sums[name] = sums.get(name, 0.0) + value.item()
            running = loss.item() if running is None else 0.98 * running + 0.02 * loss.item()
            bar.set_postfix(loss=f"{running:.5f}", lr=f"{lr_at(step):.1e}")
            if cfg.max_minutes and time.time() - started > cfg.max_minutes * 60:
                stop_early = True
                break
        done = i + 1
        val_psnr = validate(model, val_subset, device, model.cfg.ladder)
        record = {
            "epoch": epoch + 1,
            "train": {name: total / done for name, total in sums.items()},
            "val_psnr": {str(k): round(v, 3) for k, v in val_psnr.items()},
            "minutes": round((time.time() - started) / 60, 2),
        }
        meta["history"].append(record)
        print(json.dumps(record))
        score = sum(val_psnr.values()) / len(val_psnr)
        if score > meta["best_psnr"]:
            meta["best_psnr"] = score
            save_model(model, best_path)
        meta.update(epoch=epoch + 1, step=(epoch + 1) * steps_per_epoch, seconds=time.time() - started)
        _save_checkpoint(last_path, model, opt, meta)
        if stop_early:
            print(f"stopping after {cfg.max_minutes} minutes")
            break

    # The shipped artefact: the best weights, scored on the whole validation split.
    best = read_model(best_path).to(device)
    full_val = validate(best, val_images, device, best.cfg.ladder)
    init_note = _init_note(cfg.init_from)
    source = init_note or {}
    card = {
        "model": cfg.model,
        "latent_sizes": list(best.cfg.ladder),
        "kl_weight": kl_weight if cfg.model == "vae" else None,
        "training_data": {
            "cache": str(cfg.data),
            "train_faces": len(train_images),
            "val_faces": len(val_images),
            "sources": "LFW (deep-funneled), UTKFace crop_part1, CelebA img_align_celeba; see weights/README.md",
            "terms": "CelebA and UTKFace: non-commercial research only; LFW: published for research",
        },
        "initialised_from": init_note,
        "epochs": meta["epoch"],
        "training_minutes": round(meta["seconds"] / 60, 1),
        # What it took from scratch: this run plus the run it was initialised from.
        "total_epochs": meta["epoch"] + (source.get("total_epochs") or 0),
        "total_training_minutes": round(meta["seconds"] / 60 + (source.get("total_training_minutes") or 0), 1),
        "hardware": _hardware(device),
        "train_config": asdict(cfg),
        "validation_psnr": {str(k): round(v, 3) for k, v in full_val.items()},
        "history": meta["history"],
    }
    final = out / f"{cfg.model}.safetensors"
    save_model(best, final, card)
    fit_and_save(final, Path(cfg.data))  # codec and explorer statistics, inside the same file
    print(f"wrote {final} ; validation PSNR " + ", ".join(f"{k}: {v:.2f} dB" for k, v in full_val.items()))
    return final
