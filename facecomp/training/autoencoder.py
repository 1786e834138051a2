"""Training for the AE and the VAE: `train()` reads top to bottom, its parts named below it.

Each step masks every sample's latent to a random size from the ladder (nested dropout), so one
model learns all sizes. Checkpoints (training.checkpoints) hold the model, the optimiser state and
the loop position, so an interrupted run resumes. Under `torchrun` the same code trains
data-parallel (DDP), one shard of each epoch per process.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from torchvision.transforms import v2
from tqdm import tqdm

from ..latent.statistics import fit_and_save
from ..nets.autoencoder import FaceAE, ModelConfig, build_model, sample_prefix
from ..spec import LATENT_LADDER
from ..weights import read_model, save_model
from .checkpoints import load_checkpoint, save_checkpoint
from .common import (
    CardNames,
    Distributed,
    autocast,
    load_crops,
    lr_schedule,
    pick_device,
    setup_distributed,
    to_float,
    training_card,
    weights_note,
)

# Chosen from the sweep in docs/models.md: prior samples as face-like as the fitted sampler's.
DEFAULT_KL_WEIGHT = 0.2
VAL_FACES = 512  # validation subset scored every epoch (the full split at the end)
# Faces are near-symmetric: a mirrored face is a free extra training face (per sample).
AUGMENT = v2.RandomHorizontalFlip(p=0.5)
LAST, BEST = "last.ckpt.safetensors", "best.safetensors"  # in out/<model>: the checkpoint, the best weights


@dataclass
class TrainConfig:
    model: str = "ae"  # "ae" or "vae"
    data: str = "data/cache"  # the prepared crop cache (python -m facecomp prepare)
    out: str = "runs"  # the run writes into out/<model>: checkpoint, best weights, weights + card
    epochs: int = 30  # passes over the training split (a resumed run continues to this many)
    batch_size: int = 64  # faces per step, per process under torchrun
    lr: float = 2e-3  # AdamW's peak learning rate (see common.lr_schedule)
    kl_weight: float | None = None  # the VAE's KL weight (None: DEFAULT_KL_WEIGHT)
    kl_warmup_steps: int = 0  # the KL weight ramps up linearly over these steps
    log_mse: bool = False  # minimise the mean log MSE per image (the mean PSNR), not the MSE
    l1: float = 0.0  # L1 weight penalty
    l2: float = 0.0  # L2 weight penalty
    noise_sigma: float = 0.0  # denoising: Gaussian noise of this sigma on the inputs
    init_from: str | None = None  # start from these weights (the VAE from the AE; see init_weights)
    rescale_code: bool = False  # with init_from: start the VAE's codes at unit spread (see init_weights)
    max_minutes: float | None = None  # stop after this many minutes; the schedule ends there
    seed: int = 0  # model initialisation, epoch order, augmentation
    limit: int | None = None  # train on the first N training crops only
    channels: tuple[int, ...] = ModelConfig.channels  # the trunk's widths
    max_latent: int = 512  # the largest latent size


def effective_kl_weight(cfg: TrainConfig) -> float:
    """The KL weight a run uses: none for the AE, the shipped default unless given."""
    if cfg.model == "ae":
        return 0.0
    return cfg.kl_weight if cfg.kl_weight is not None else DEFAULT_KL_WEIGHT


def train(cfg: TrainConfig) -> tuple[Path | None, FaceAE]:
    """Train, keep the best checkpoint by validation PSNR, write weights + card to cfg.out.

    Under `torchrun` every process trains on its shard of each epoch (DDP); rank 0 alone
    validates and writes checkpoints, weights and the card. Returns the weights file (None
    on the other ranks) and the trained model.
    """
    job = setup_distributed()
    torch.manual_seed(cfg.seed + job.rank)  # augmentation and posterior noise differ per rank
    device = pick_device(job)
    out = Path(cfg.out) / cfg.model
    out.mkdir(parents=True, exist_ok=True)
    train_images, val_images = load_crops(cfg.data, "train", cfg.limit), load_crops(cfg.data, "val")

    model = start_model(cfg, device)
    opt = build_optimizer(model, cfg.lr)
    meta = resume(cfg, job, out, model, opt)
    # DDP starts every rank from rank 0's weights and averages gradients in backward().
    step_model = DistributedDataParallel(model) if job.world_size > 1 else model

    started = time.time() - meta["seconds"]
    steps_per_epoch = max(1, len(train_images) // (cfg.batch_size * job.world_size))
    lr_at = lr_schedule(cfg.lr, cfg.epochs * steps_per_epoch, started, cfg.max_minutes)
    for epoch in range(meta["epoch"], cfg.epochs):
        terms, stop = train_epoch(cfg, job, model, step_model, opt, train_images, epoch, lr_at, started)
        _sync_buffers(model, job)
        meta.update(epoch=epoch + 1, step=(epoch + 1) * steps_per_epoch, seconds=time.time() - started)
        if job.main:
            end_epoch(model, opt, meta, terms, val_images[:VAL_FACES], out)
        if job.world_size > 1:
            dist.barrier()  # the other ranks wait for the checkpoint
        if stop:
            if job.main:
                print(f"stopping after {cfg.max_minutes} minutes")
            break
    if not job.main:
        return None, model
    faces = {"train_faces": len(train_images), "val_faces": len(val_images)}
    return ship(cfg, job, out, meta, faces, val_images), model


# Setting up ---------------------------------------------------------------------------------------


def start_model(cfg: TrainConfig, device: torch.device) -> FaceAE:
    """The model to train, on `device`: freshly initialised, or from cfg.init_from's weights."""
    model = build_model(ModelConfig(kind=cfg.model, max_latent=cfg.max_latent, channels=tuple(cfg.channels)))
    if cfg.init_from:
        init_weights(model, read_model(Path(cfg.init_from)), cfg.rescale_code)
    model.to(device)
    if device.type == "cpu":
        model = model.to(memory_format=torch.channels_last)
    return model


def init_weights(model: FaceAE, source: FaceAE, rescale_code: bool = False) -> None:
    """Weight surgery: start `model` from `source` (the VAE from the AE, or a VAE from a VAE).

    Same trunk, so every tensor of matching shape is copied; the source's code becomes the
    VAE's mean. With `rescale_code`, a VAE's code is also rescaled to unit spread per
    dimension (encoder rows divided, decoder columns multiplied by the source's fitted code
    spread). That leaves every reconstruction unchanged but starts the codes where the
    prior N(0, I) lies: an AE's codes spread far wider than that, and the KL term alone
    moves them there far too slowly for a fine-tune.
    """
    own = model.state_dict()
    for key, value in source.state_dict().items():
        if key in own and own[key].shape == value.shape:
            own[key] = value.clone()
    n = model.cfg.max_latent
    head_w, head_b = source.state_dict()["encoder.head.weight"], source.state_dict()["encoder.head.bias"]
    own["encoder.head.weight"][:n], own["encoder.head.bias"][:n] = head_w[:n], head_b[:n]
    if model.cfg.kind == "vae":
        spread = source.latent_std.float().clamp_min(1e-3) if rescale_code else torch.ones(n)
        own["encoder.head.weight"][:n] /= spread[:, None]
        own["encoder.head.bias"][:n] /= spread
        own["decoder.head.weight"] *= spread[None, :]
        if source.cfg.kind == "vae":  # the posterior's log-variance follows the rescaling
            own["encoder.head.bias"][n:] -= 2 * spread.log()
        else:
            own["encoder.head.weight"][n:] = 0.0
            own["encoder.head.bias"][n:] = -4.0 - 2 * spread.log()  # small posterior noise at first
    model.load_state_dict(own)


def build_optimizer(model: FaceAE, lr: float) -> torch.optim.Optimizer:
    """AdamW with a light weight decay on weights only (not on biases and norms)."""
    decay, no_decay = [], []
    for p in model.parameters():
        (decay if p.ndim > 1 else no_decay).append(p)
    return torch.optim.AdamW(
        [{"params": decay, "weight_decay": 1e-5}, {"params": no_decay, "weight_decay": 0.0}], lr=lr
    )


def resume(cfg: TrainConfig, job: Distributed, out: Path, model: FaceAE, opt: torch.optim.Optimizer) -> dict:
    """The loop's position: from out/last.ckpt.safetensors (restoring model and optimiser) if there is one."""
    if not (out / LAST).exists():
        return {"epoch": 0, "step": 0, "best_psnr": -1.0, "history": [], "seconds": 0.0, "train_config": asdict(cfg)}
    meta = load_checkpoint(out / LAST, {"model": model}, {"model": opt})  # every rank resumes from the same one
    if job.main:
        print(f"resuming {cfg.model} from epoch {meta['epoch']} (step {meta['step']})")
    return meta


# One epoch ----------------------------------------------------------------------------------------


def train_epoch(
    cfg: TrainConfig,
    job: Distributed,
    model: FaceAE,
    step_model: torch.nn.Module,
    opt: torch.optim.Optimizer,
    images: torch.Tensor,
    epoch: int,
    lr_at: Callable[[int], float],
    started: float,
) -> tuple[dict[str, float], bool]:
    """One pass over this rank's shard; returns the mean loss terms and whether the deadline passed."""
    device = next(model.parameters()).device
    gen = torch.Generator().manual_seed(cfg.seed * 1000 + epoch)  # the same order after a resume, on every rank
    order = torch.randperm(len(images), generator=gen)[job.rank :: job.world_size]
    steps = max(1, len(images) // (cfg.batch_size * job.world_size))
    model.train()
    running, sums, stop = None, {}, False
    bar = tqdm(range(steps), desc=f"{cfg.model} epoch {epoch + 1}/{cfg.epochs}", unit="batch", disable=not job.main)
    for i in bar:
        step = epoch * steps + i
        for group in opt.param_groups:
            group["lr"] = lr_at(step)
        inputs, target = training_batch(cfg, images[order[i * cfg.batch_size : (i + 1) * cfg.batch_size]], device)
        k = sample_prefix(len(target), model.cfg.ladder, gen).to(device)
        loss, terms = train_step(cfg, model, step_model, opt, inputs, target, k, step)
        for name, value in terms.items():
            sums[name] = sums.get(name, 0.0) + value.item()
        running = loss.item() if running is None else 0.98 * running + 0.02 * loss.item()
        bar.set_postfix(loss=f"{running:.5f}", lr=f"{lr_at(step):.1e}")
        if _deadline_passed(cfg, started, job):
            stop = True
            break
    return {name: total / (i + 1) for name, total in sums.items()}, stop


def training_batch(cfg: TrainConfig, batch: torch.Tensor, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """A batch of uint8 faces as (inputs, target): each face mirrored at random; the inputs noisy with noise_sigma."""
    target = to_float(torch.stack([AUGMENT(face) for face in batch]), device)
    inputs = target
    if cfg.noise_sigma:
        inputs = (target + cfg.noise_sigma * torch.randn_like(target)).clamp(0, 1)
    return inputs, target


def train_step(
    cfg: TrainConfig,
    model: FaceAE,
    step_model: torch.nn.Module,
    opt: torch.optim.Optimizer,
    inputs: torch.Tensor,
    target: torch.Tensor,
    k: torch.Tensor,
    step: int,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """One optimiser step on one batch, each face decoded from its latent prefix `k`; returns the loss
    and its terms (with "weight_penalty" when there are weight penalties)."""
    with autocast(target.device):
        result = step_model(inputs, k)
    warm = min(1.0, (step + 1) / cfg.kl_warmup_steps) if cfg.kl_warmup_steps else 1.0
    terms = model.loss(result, target, effective_kl_weight(cfg) * warm, cfg.log_mse)
    loss = terms["total"]
    if cfg.l1 or cfg.l2:
        terms["weight_penalty"] = _weight_penalty(model, cfg.l1, cfg.l2)
        loss = loss + terms["weight_penalty"]
    opt.zero_grad(set_to_none=True)
    loss.backward()  # DDP averages the gradients over the ranks here
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()
    return loss, terms


def _weight_penalty(model: torch.nn.Module, l1: float, l2: float) -> torch.Tensor:
    weights = [p for p in model.parameters() if p.ndim > 1]
    penalty = torch.zeros((), device=weights[0].device)
    if l1:
        penalty = penalty + l1 * sum(w.abs().sum() for w in weights)
    if l2:
        penalty = penalty + l2 * sum(w.pow(2).sum() for w in weights)
    return penalty


def _deadline_passed(cfg: TrainConfig, started: float, job: Distributed) -> bool:
    """Every rank must stop at the same step, so rank 0's clock decides for all."""
    passed = bool(cfg.max_minutes) and time.time() - started > cfg.max_minutes * 60
    if job.world_size > 1 and cfg.max_minutes:
        flag = torch.tensor([float(passed)])
        dist.broadcast(flag, src=0)
        passed = bool(flag.item())
    return passed


def _sync_buffers(model: FaceAE, job: Distributed) -> None:
    """Batch-norm running statistics from rank 0: each rank's last forward updated its own."""
    if job.world_size > 1:
        for buffer in model.buffers():
            dist.broadcast(buffer.data, src=0)


# After each epoch, and at the end -----------------------------------------------------------------


@torch.inference_mode()
def validate(model: FaceAE, images: torch.Tensor, device: torch.device, ladder=LATENT_LADDER) -> dict[int, float]:
    """Mean PSNR per latent size on uint8 images (deterministic: the VAE uses its mean)."""
    model.eval()
    totals = {k: 0.0 for k in ladder}
    for start in range(0, len(images), 128):
        x = to_float(images[start : start + 128], device)
        with autocast(device):
            code = model.code(x)
        for k in ladder:
            with autocast(device):
                recon = model.decode(code[:, :k]).float()
            mse = (recon - x).pow(2).flatten(1).mean(1).clamp_min(1e-10)
            totals[k] += (10 * torch.log10(1 / mse)).sum().item()
    model.train()
    return {k: totals[k] / len(images) for k in ladder}


def end_epoch(
    model: FaceAE, opt: torch.optim.Optimizer, meta: dict, terms: dict[str, float], val_images: torch.Tensor, out: Path
) -> None:
    """Rank 0 after each epoch: validate, log, keep the best weights so far, write the checkpoint."""
    val_psnr = validate(model, val_images, next(model.parameters()).device, model.cfg.ladder)
    record = {
        "epoch": meta["epoch"],
        "train": terms,
        "val_psnr": {str(k): round(v, 3) for k, v in val_psnr.items()},
        "minutes": round(meta["seconds"] / 60, 2),
    }
    meta["history"].append(record)
    print(json.dumps(record))
    score = sum(val_psnr.values()) / len(val_psnr)
    if score > meta["best_psnr"]:
        meta["best_psnr"] = score
        save_model(model, out / BEST)
    save_checkpoint(out / LAST, {"model": model}, {"model": opt}, dict(meta, model_config=model.cfg.to_dict()))


def ship(cfg: TrainConfig, job: Distributed, out: Path, meta: dict, faces: dict, val_images: torch.Tensor) -> Path:
    """The shipped artefact: the best weights, scored on the whole validation split, with their card and
    the code statistics (inside the same file). Returns out/<model>.safetensors."""
    device = pick_device(job)
    best = read_model(out / BEST).to(device)
    full_val = validate(best, val_images, device, best.cfg.ladder)
    final = out / f"{cfg.model}.safetensors"
    save_model(best, final, model_card(cfg, job, best, meta, faces, full_val))
    fit_and_save(final, Path(cfg.data))  # codec and explorer statistics, inside the same file
    print(f"wrote {final} ; validation PSNR " + ", ".join(f"{k}: {v:.2f} dB" for k, v in full_val.items()))
    return final


def model_card(cfg: TrainConfig, job: Distributed, best: FaceAE, meta: dict, faces: dict, val_psnr: dict) -> dict:
    """The model card: what was trained on what, how long, on which hardware, and how well."""
    source = weights_note(cfg.init_from)
    before = source or {}
    return training_card(
        CardNames(),
        config=asdict(cfg),
        minutes=meta["seconds"] / 60,
        device=next(best.parameters()).device,
        source=source,
        model=cfg.model,
        latent_sizes=list(best.cfg.ladder),
        kl_weight=effective_kl_weight(cfg) if cfg.model == "vae" else None,
        training_data={
            "cache": str(cfg.data),
            **faces,
            "sources": "LFW (deep-funneled), UTKFace crop_part1, CelebA img_align_celeba; see weights/README.md",
            "terms": "CelebA and UTKFace: non-commercial research only; LFW: published for research",
        },
        epochs=meta["epoch"],
        # What it took from scratch: this run plus the run it was initialised from.
        total_epochs=meta["epoch"] + (before.get("total_epochs") or 0),
        total_training_minutes=round(meta["seconds"] / 60 + (before.get("total_training_minutes") or 0), 1),
        world_size=job.world_size,
        validation_psnr={str(k): round(v, 3) for k, v in val_psnr.items()},
        history=meta["history"],
    )
