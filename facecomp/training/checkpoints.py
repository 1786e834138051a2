"""Resumable training checkpoints as safetensors: networks, optimiser states and the loop's position.

A network `name` stores its state as "<name>.<key>"; an optimiser `name` stores its state as
"opt-<name>.<param index>.<key>" and its parameter groups under meta["param_groups"][name]. A checkpoint
is written to a temporary file and renamed, so an interruption never leaves half of one.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from ..weights import tensors_from_file, tensors_to_file


def save_checkpoint(
    path: Path, networks: dict[str, nn.Module], optimisers: dict[str, torch.optim.Optimizer], meta: dict
) -> None:
    """Write every network's state, every optimiser's state and `meta` (JSON-able) to `path`."""
    tensors = {
        f"{name}.{k}": v.detach().contiguous() for name, net in networks.items() for k, v in net.state_dict().items()
    }
    groups = {}
    for name, opt in optimisers.items():
        state = opt.state_dict()
        for idx, values in state["state"].items():
            for key, value in values.items():
                tensors[f"opt-{name}.{idx}.{key}"] = torch.as_tensor(value)
        groups[name] = state["param_groups"]
    tmp = Path(path).with_suffix(".tmp")
    tensors_to_file(tensors, tmp, dict(meta, param_groups=groups))
    os.replace(tmp, path)


def load_checkpoint(path: Path, networks: dict[str, nn.Module], optimisers: dict[str, torch.optim.Optimizer]) -> dict:
    """Restore what save_checkpoint wrote into the given networks and optimisers; returns its meta."""
    tensors, meta = tensors_from_file(path)
    for name, net in networks.items():
        prefix = f"{name}."
        net.load_state_dict({k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)})
    for name, opt in optimisers.items():
        prefix, groups = _optimiser_layout(meta["param_groups"], name)
        state: dict[int, dict] = {}
        for key, value in tensors.items():
            if key.startswith(prefix):
                idx, field = key[len(prefix) :].split(".", 1)
                state.setdefault(int(idx), {})[field] = value
        opt.load_state_dict({"state": state, "param_groups": groups})
    return meta


def _optimiser_layout(param_groups: dict | list, name: str) -> tuple[str, list]:
    """Where optimiser `name`'s state lies: its key prefix and its parameter groups.

    Checkpoints of the AE/VAE trainer from before this module held one optimiser, as "opt.<idx>.<key>"
    with meta["param_groups"] a list; they still resume.
    """
    if isinstance(param_groups, list):
        return "opt.", param_groups
    return f"opt-{name}.", param_groups[name]
