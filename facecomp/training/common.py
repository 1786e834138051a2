"""What the trainers share: where a run computes, in what precision and layout, its learning-rate
schedule, its training crops, and the card that says what ran, for how long, on what hardware and
from which weights.
"""

from __future__ import annotations

import json
import math
import os
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist

from ..data import CropCache
from ..hardware import cpu_has_bfloat16
from ..weight_files import sha256_file

# Where it runs ----------------------------------------------------------------------------------


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


def pick_device(job: Distributed = Distributed(), mps: bool = True) -> torch.device:
    """A GPU if there is one (this rank's under torchrun), else Apple's MPS (single process, if `mps`), else the CPU."""
    if torch.cuda.is_available():
        return torch.device("cuda", job.local_rank) if job.world_size > 1 else torch.device("cuda")
    if mps and torch.backends.mps.is_available() and job.world_size == 1:
        return torch.device("mps")
    return torch.device("cpu")


def cpu_name() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:  # Linux: platform.processor() is often empty there
            cpu = next((line.split(":", 1)[1].strip() for line in fh if line.startswith("model name")), cpu)
    except OSError:
        pass
    return cpu


def hardware(device: torch.device | str) -> str:
    """The hardware a run computes on, as its card records it: the GPU's name, or the CPU's and its threads."""
    device = torch.device(device)
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)}, cuda"
    return f"{cpu_name()}, {torch.get_num_threads()} threads, {device.type}"


# Precision and memory layout --------------------------------------------------------------------


def autocast(device: torch.device | str, on_gpu: bool = False) -> torch.autocast:
    """bfloat16 autocast on a CPU with bfloat16 instructions (its fast path there; elsewhere
    emulated and slower than float32: hardware.cpu_has_bfloat16) and, with `on_gpu`, on any
    other device too."""
    device = torch.device(device)
    on = cpu_has_bfloat16() if device.type == "cpu" else on_gpu
    return torch.autocast(device.type, torch.bfloat16, enabled=on)


def to_float(batch: torch.Tensor, device: torch.device | str) -> torch.Tensor:
    """uint8 pictures as floats in [0, 1] on `device`; channels_last on a CPU (the fast convolutions there)."""
    device = torch.device(device)
    x = batch.to(device, non_blocking=True).float().div_(255)
    return x.contiguous(memory_format=torch.channels_last) if device.type == "cpu" else x


# Learning rate ----------------------------------------------------------------------------------


def cosine_decay(progress: float, floor: float) -> float:
    """1 at progress 0, down half a cosine to `floor` at progress 1, and `floor` after that."""
    return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def elapsed_fraction(started: float, minutes: float) -> float:
    """How much of a budget of `minutes` since `started` (a time.time()) has passed."""
    return (time.time() - started) / (60 * minutes)


def lr_schedule(
    peak: float, total_steps: int, started: float, minutes: float | None = None, floor: float = 0.02
) -> Callable[[int], float]:
    """Linear warm-up over a tenth of the steps (500 at most), then a cosine to `floor` x `peak` over the
    remaining steps, ending at the deadline (`minutes` after `started`) when there is one and it comes first."""
    warmup = min(500, total_steps // 10)

    def lr_at(step: int) -> float:
        if step < warmup:
            return peak * (step + 1) / warmup
        progress = (step - warmup) / max(1, total_steps - warmup)
        if minutes:
            # A time budget: the cosine ends at the deadline even on a busy machine.
            progress = max(progress, elapsed_fraction(started, minutes))
        return peak * cosine_decay(progress, floor)

    return lr_at


# Training crops ---------------------------------------------------------------------------------


def load_crops(data: Path | str, split: str = "train", limit: int | None = None) -> torch.Tensor:
    """One split of a prepared crop cache (data.CropCache) as uint8 (N, 3, 128, 128) in memory; its first `limit`."""
    crops = CropCache(Path(data), split).load_all()
    return crops[:limit] if limit else crops


# Cards ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CardNames:
    """What a trainer's card calls the facts every training card records. Each trainer keeps the names
    its cards have always had: the shipped cards (weights/*.json) and the code reading them use them."""

    config: str = "train_config"  # what ran: the trainer's settings
    minutes: str = "training_minutes"  # how long: wall-clock minutes, resumed sessions included
    hardware: str = "hardware"  # on what: see hardware()
    source: str | None = "initialised_from"  # from which weights (see weights_note); None: not recorded
    digits: int = 1  # decimals of the minutes


def training_card(
    names: CardNames, config: dict, minutes: float, device: torch.device | str, source: dict | None = None, **fields
) -> dict:
    """A trainer's card: its own `fields`, then what ran (`config`), how long (`minutes`), on what
    hardware (`device`'s) and, where the card records it, from which weights (`source`, None: from scratch).
    weights.save_model, weights.save_refiner and the detail trainer write it beside the weights."""
    card = dict(fields)
    card[names.config] = config
    card[names.minutes] = round(minutes, names.digits)
    card[names.hardware] = hardware(device)
    if names.source:
        card[names.source] = source
    return card


def weights_note(path: Path | str | None) -> dict | None:
    """What a run started from: the weights' file name and hash, and what their own card says they took
    (training minutes and epochs, from scratch). None for a run from scratch."""
    if not path:
        return None
    path = Path(path)
    card_file = path.with_suffix(".json")
    source_card = json.loads(card_file.read_text()) if card_file.exists() else {}
    return {
        "weights": path.name,
        "sha256": sha256_file(path),
        "total_training_minutes": source_card.get("total_training_minutes", source_card.get("training_minutes")),
        "total_epochs": source_card.get("total_epochs", source_card.get("epochs")),
    }
