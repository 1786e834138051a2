"""Data-parallel training: two CPU processes with gloo, as `torchrun --nproc_per_node=2` runs them."""

from __future__ import annotations

import hashlib
import json
import os
import socket
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from facecomp.training.autoencoder import TrainConfig, train

from .conftest import TINY_CHANNELS, generated_faces

pytestmark = pytest.mark.slow  # two training processes: a minute or more


def write_tiny_cache(folder: Path, n_train: int = 32, n_val: int = 4) -> Path:
    """A `prepare`-style cache of generated faces."""
    folder.mkdir(parents=True)
    faces = (generated_faces(n_train + n_val, seed=3) * 255).round().to(torch.uint8).permute(0, 2, 3, 1)
    np.save(folder / "crops.npy", faces.numpy())
    split = {"train": list(range(n_train)), "val": list(range(n_train, n_train + n_val))}
    (folder / "split.json").write_text(json.dumps(split))
    (folder / "index.json").write_text(json.dumps({"crops": [{"age": None}] * (n_train + n_val)}))
    return folder


def state_digest(model: torch.nn.Module) -> str:
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().float().contiguous().cpu().numpy().tobytes())
    return digest.hexdigest()


def _run_rank(rank: int, world_size: int, port: int, cfg: dict, out: str) -> None:
    os.environ.update(
        RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world_size), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port)
    )
    torch.set_num_threads(1)
    cfg["channels"] = tuple(cfg["channels"])
    _, model = train(TrainConfig(**cfg))
    Path(out, f"rank{rank}.txt").write_text(state_digest(model))
    dist.destroy_process_group()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_job(cfg: TrainConfig, out: Path, world_size: int = 2) -> list[str]:
    mp.spawn(_run_rank, args=(world_size, free_port(), asdict(cfg), str(out)), nprocs=world_size)
    return [(out / f"rank{r}.txt").read_text() for r in range(world_size)]


def test_two_gloo_ranks_end_with_identical_weights_and_resume(tmp_path: Path) -> None:
    cache = write_tiny_cache(tmp_path / "cache")
    runs = tmp_path / "runs"
    cfg = TrainConfig(model="vae", data=str(cache), out=str(runs), epochs=1, batch_size=4, channels=TINY_CHANNELS)
    first = run_job(cfg, tmp_path)
    assert first[0] == first[1]  # parameters and batch-norm statistics agree on both ranks
    card = json.loads((runs / "vae" / "vae.json").read_text())
    assert card["world_size"] == 2 and card["epochs"] == 1
    # Each rank trains on its half: 32 faces / (4 per batch x 2 ranks) = 4 steps per epoch.
    assert len(card["history"]) == 1
    cfg.epochs = 2  # the same command with more epochs resumes from rank 0's checkpoint
    second = run_job(cfg, tmp_path)
    assert second[0] == second[1] != first[0]
    assert json.loads((runs / "vae" / "vae.json").read_text())["epochs"] == 2
