"""Training for the AE and the VAE: `train()` reads top to bottom, its parts named below it.

Each step masks every sample's latent to a random size from the ladder (nested
dropout), so one model learns all sizes. Checkpoints are safetensors holding the
model, the optimiser state and the loop position, so an interrupted run resumes.
Under `torchrun` the same code trains data-parallel (DDP), one shard of each epoch
per process.
"""

from __future__ import annotations

import json
import math
import os
import platform
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from torchvision.transforms import v2
from tqdm import tqdm

from .data import CropCache
from .latents import fit_and_save
from .model import LATENT_LADDER, FaceAE, ModelConfig, build_model, sample_prefix
from .weight_files import sha256_file
from .weights import read_model, save_model, tensors_from_file, tensors_to_file

# Chosen from the sweep in the README: prior samples as face-like as the fitted sampler's.
DEFAULT_KL_WEIGHT = 0.2
VAL_FACES = 512  # validation subset scored every epoch (the full split at the end)
# Faces are near-symmetric: a mirrored face is a free extra training face (per sample).
AUGMENT = v2.RandomHorizontalFlip(p=0.5)


@dataclass
class TrainConfig:
    model: str = "ae"
    data: str = "data/cache"
    out: str = "runs"
    epochs: int = 30
    batch_size: int = 64
    lr: float = 2e-3
    kl_weight: float | None = None
    kl_warmup_steps: int = 0  # the KL weight ramps up linearly over these steps
    log_mse: bool = False
    l1: float = 0.0
    l2: float = 0.0
    noise_sigma: float = 0.0
    init_from: str | None = None
    rescale_code: bool = False  # with init_from: start the VAE's codes at unit spread (see init_weights)
    max_minutes: float | None = None
    seed: int = 0
    limit: int | None = None
    channels: tuple[int, ...] = ModelConfig.channels
    max_latent: int = 512


def effective_kl_weight(cfg: TrainConfig) -> float:
    """The KL weight a run uses: none for the AE, the shipped default unless given."""
    if cfg.model == "ae":
        return 0.0
    return cfg.kl_weight if cfg.kl_weight is not None else DEFAULT_KL_WEIGHT


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


def cpu_name() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:  # Linux: platform.processor() is often empty there
            cpu = next((line.split(":", 1)[1].strip() for line in fh if line.startswith("model name")), cpu)
    except OSError:
        pass
    return cpu


def _hardware(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)}, cuda"
    return f"{cpu_name()}, {torch.get_num_threads()} threads, {device.type}"


def init_weights(model: FaceAE, source: FaceAE, rescale_code: bool = False) -> None:
    """Weight surgery: start `model` from `source` (the VAE from the AE, or a VAE from a VAE).

    Same trunk, so every tensor of matching shape is copied; the source's code becomes the
    VAE's mean. With `rescale_code`, a VAE's code is also rescaled to unit spread per
    dimension (encoder rows divided, decoder columns multiplied by the source's fitted code
    spread). That leaves every reconstruction unchanged but starts the codes where the
    prior N(0, I) lies: the KL term alone moves them there far too slowly (the first
    VAE's codes still spread by about 3.5 after its fine-tune, an AE's by about 14).
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


@dataclass(frozen=True)
class Distributed:
    """This process's place in a `torchrun` job (a single process: rank 0 of 1)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def setup_distributed() -> Distributed:
    """Join the process group torchrun describes in the environment (NCCL on GPUs, gloo on CPU)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return Distributed()
    if not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if torch.cuda.is_available():
        torch.cuda.set_device(local_rank)
    return Distributed(dist.get_rank(), world_size, local_rank)


def pick_device(job: Distributed = Distributed()) -> torch.device:
    if torch.cuda.is_available():
        return torch.device("cuda", job.local_rank) if job.world_size > 1 else torch.device("cuda")
    if torch.backends.mps.is_available() and job.world_size == 1:
        return torch.device("mps")
    return torch.device("cpu")


def build_optimizer(model: FaceAE, lr: float) -> torch.optim.Optimizer:
    """AdamW with a light weight decay on weights only (not on biases and norms)."""
    decay, no_decay = [], []
    for p in model.parameters():
        (decay if p.ndim > 1 else no_decay).append(p)
    return torch.optim.AdamW(
        [{"params": decay, "weight_decay": 1e-5}, {"params": no_decay, "weight_decay": 0.0}], lr=lr
    )


def lr_schedule(cfg: TrainConfig, total_steps: int, started: float) -> Callable[[int], float]:
    """Linear warm-up, then a cosine to 2% of the peak, ending at the deadline when there is one."""
    warmup = min(500, total_steps // 10)

    def lr_at(step: int) -> float:
        if step < warmup:
            return cfg.lr * (step + 1) / warmup
        progress = (step - warmup) / max(1, total_steps - warmup)
        if cfg.max_minutes:
            # A time budget: the cosine ends at the deadline even on a busy machine.
            progress = max(progress, (time.time() - started) / (60 * cfg.max_minutes))
        return cfg.lr * (0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))

    return lr_at


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
    kl_weight = effective_kl_weight(cfg)
    gen = torch.Generator().manual_seed(cfg.seed * 1000 + epoch)  # the same order after a resume, on every rank
    order = torch.randperm(len(images), generator=gen)[job.rank :: job.world_size]
    steps = max(1, len(images) // (cfg.batch_size * job.world_size))
    autocast = torch.autocast(device.type, torch.bfloat16, enabled=device.type == "cpu")
    model.train()
    running, sums, stop = None, {}, False
    bar = tqdm(range(steps), desc=f"{cfg.model} epoch {epoch + 1}/{cfg.epochs}", unit="batch", disable=not job.main)
    for i in bar:
        step = epoch * steps + i
        for group in opt.param_groups:
            group["lr"] = lr_at(step)
        batch = images[order[i * cfg.batch_size : (i + 1) * cfg.batch_size]]
        batch = torch.stack([AUGMENT(face) for face in batch])
        target = to_float(batch, device)
        inputs = target
        if cfg.noise_sigma:
            inputs = (target + cfg.noise_sigma * torch.randn_like(target)).clamp(0, 1)
        k = sample_prefix(len(target), model.cfg.ladder, gen).to(device)
        with autocast:
            result = step_model(inputs, k)
        warm = min(1.0, (step + 1) / cfg.kl_warmup_steps) if cfg.kl_warmup_steps else 1.0
        terms = model.loss(result, target, kl_weight * warm, cfg.log_mse)
        loss = terms["total"]
        if cfg.l1 or cfg.l2:
            terms["weight_penalty"] = _weight_penalty(model, cfg.l1, cfg.l2)
            loss = loss + terms["weight_penalty"]
        opt.zero_grad(set_to_none=True)
        loss.backward()  # DDP averages the gradients over the ranks here
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        for name, value in terms.items():
            sums[name] = sums.get(name, 0.0) + value.item()
        running = loss.item() if running is None else 0.98 * running + 0.02 * loss.item()
        bar.set_postfix(loss=f"{running:.5f}", lr=f"{lr_at(step):.1e}")
        if _deadline_passed(cfg, started, job):
            stop = True
            break
    return {name: total / (i + 1) for name, total in sums.items()}, stop


def write_card(cfg: TrainConfig, job: Distributed, best: FaceAE, meta: dict, faces: dict, val_psnr: dict) -> dict:
    """The model card: what was trained on what, how long, on which hardware, and how well."""
    init_note = _init_note(cfg.init_from)
    source = init_note or {}
    return {
        "model": cfg.model,
        "latent_sizes": list(best.cfg.ladder),
        "kl_weight": effective_kl_weight(cfg) if cfg.model == "vae" else None,
        "training_data": {
            "cache": str(cfg.data),
            **faces,
            "sources": "LFW (deep-funneled), UTKFace crop_part1, CelebA img_align_celeba; see weights/README.md",
            "terms": "CelebA and UTKFace: non-commercial research only; LFW: published for research",
        },
        "initialised_from": init_note,
        "epochs": meta["epoch"],
        "training_minutes": round(meta["seconds"] / 60, 1),
        # What it took from scratch: this run plus the run it was initialised from.
        "total_epochs": meta["epoch"] + (source.get("total_epochs") or 0),
        "total_training_minutes": round(meta["seconds"] / 60 + (source.get("total_training_minutes") or 0), 1),
        "hardware": _hardware(next(best.parameters()).device),
        "world_size": job.world_size,
        "train_config": asdict(cfg),
        "validation_psnr": {str(k): round(v, 3) for k, v in val_psnr.items()},
        "history": meta["history"],
    }


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

    train_images = CropCache(Path(cfg.data), "train").load_all()
    if cfg.limit:
        train_images = train_images[: cfg.limit]
    val_images = CropCache(Path(cfg.data), "val").load_all()

    model = build_model(ModelConfig(kind=cfg.model, max_latent=cfg.max_latent, channels=tuple(cfg.channels)))
    if cfg.init_from:
        init_weights(model, read_model(Path(cfg.init_from)), cfg.rescale_code)
    model.to(device)
    if device.type == "cpu":
        model = model.to(memory_format=torch.channels_last)
    opt = build_optimizer(model, cfg.lr)

    last_path, best_path = out / "last.ckpt.safetensors", out / "best.safetensors"
    meta = {"epoch": 0, "step": 0, "best_psnr": -1.0, "history": [], "seconds": 0.0, "train_config": asdict(cfg)}
    if last_path.exists():  # every rank resumes from the same checkpoint
        meta = _load_checkpoint(last_path, model, opt)
        if job.main:
            print(f"resuming {cfg.model} from epoch {meta['epoch']} (step {meta['step']})")
    # DDP starts every rank from rank 0's weights and averages gradients in backward().
    step_model = DistributedDataParallel(model) if job.world_size > 1 else model

    started = time.time() - meta["seconds"]
    steps_per_epoch = max(1, len(train_images) // (cfg.batch_size * job.world_size))
    lr_at = lr_schedule(cfg, cfg.epochs * steps_per_epoch, started)
    for epoch in range(meta["epoch"], cfg.epochs):
        terms, stop = train_epoch(cfg, job, model, step_model, opt, train_images, epoch, lr_at, started)
        _sync_buffers(model, job)
        meta.update(epoch=epoch + 1, step=(epoch + 1) * steps_per_epoch, seconds=time.time() - started)
        if job.main:
            val_psnr = validate(model, val_images[:VAL_FACES], device, model.cfg.ladder)
            record = {
                "epoch": epoch + 1,
                "train": terms,
                "val_psnr": {str(k): round(v, 3) for k, v in val_psnr.items()},
                "minutes": round(meta["seconds"] / 60, 2),
            }
            meta["history"].append(record)
            print(json.dumps(record))
            score = sum(val_psnr.values()) / len(val_psnr)
            if score > meta["best_psnr"]:
                meta["best_psnr"] = score
                save_model(model, best_path)
            _save_checkpoint(last_path, model, opt, meta)
        if job.world_size > 1:
            dist.barrier()  # the other ranks wait for the checkpoint
        if stop:
            if job.main:
                print(f"stopping after {cfg.max_minutes} minutes")
            break
    if not job.main:
        return None, model

    # The shipped artefact: the best weights, scored on the whole validation split.
    best = read_model(best_path).to(device)
    full_val = validate(best, val_images, device, best.cfg.ladder)
    faces = {"train_faces": len(train_images), "val_faces": len(val_images)}
    final = out / f"{cfg.model}.safetensors"
    save_model(best, final, write_card(cfg, job, best, meta, faces, full_val))
    fit_and_save(final, Path(cfg.data))  # codec and explorer statistics, inside the same file
    print(f"wrote {final} ; validation PSNR " + ", ".join(f"{k}: {v:.2f} dB" for k, v in full_val.items()))
    return final, model
