"""Train the sharp decoding (facecomp.nets.refiner): a refiner of the MSE decoders' pictures, against a
patch discriminator, in the background on a CPU, resumable.

    python -m facecomp train-sharp --data data/cache --out runs/sharp --minutes 150

The refiner learns from the pictures the app and the codec actually show: the MSE decodings of
training faces' codes at every latent size, of .fcz base layers at small budgets, of slider edits,
morph midpoints and sampled codes, from both models. They are decoded once into a pool kept in
`out` (the base decoders are frozen). Each step:
  discriminator  logistic loss: real training crops against refined pictures, with an R1 penalty
                 on real crops every `r1_every` steps (Mescheder et al. 2018)
  refiner        adversarial and feature-matching terms (ramped up from zero together, so it starts
                 as the MSE decoder) plus
                 `keep_weight` x L1 between the 4x4-averaged refined and MSE pictures: the refiner
                 adds detail and leaves the coarse picture, and with it the person, where it was;
                 plus, for the pictures that stand for a known face (reconstructions and files),
                 `match_weight` x feature matching (pix2pixHD): L1 between the discriminator's
                 hidden activations of the refined picture and of that face, so that the detail
                 added is the detail such a face has, not any texture that passes the critic;
                 plus `code_weight` x the squared distance, in training codes' spreads, between the
                 AE encoder's code of the refined picture and that of the face it stands for (its
                 crop where known, else the MSE picture): the encoder reads who, how old, smiling
                 or not, so detail may change none of it
An exponential moving average of the refiner's weights is what gets exported.
"""

from __future__ import annotations

import copy
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..codec.fcz import LoadedModel, compress_code, decode_code
from ..codec.pictures import preview_decode
from ..latent.explorer import slerp
from ..latent.statistics import all_codes
from ..measure.realism import detail_energy
from ..nets.autoencoder import FaceAE
from ..nets.refiner import PatchDiscriminator, Refiner, RefinerConfig, low_pass
from ..visual import to_pil
from ..weights import load_models, save_refiner
from .checkpoints import load_checkpoint, save_checkpoint
from .common import CardNames, autocast, load_crops, to_float, training_card

# How the pool's pictures are made, and how often (shares sum to 1).
POOL_MIX = {"reconstruction": 0.3, "file": 0.25, "edit": 0.15, "morph": 0.1, "sample": 0.2}
PAIRED = ("reconstruction", "file")  # kinds whose picture stands for its own training crop
FILE_BUDGETS = (32, 48, 64, 96, 128, 192)
CPU = torch.device("cpu")  # train-sharp runs in the background on the CPU
# The sharp card's names for what every training card records (common.CardNames).
CARD_NAMES = CardNames(config="training", source=None)


@dataclass
class SharpTrainConfig:
    data: str = "data/cache"  # the prepared crop cache (python -m facecomp prepare)
    out: str = "runs/sharp"  # pool, checkpoints, samples
    minutes: float = 150.0  # wall-clock budget of this run; a resumed run adds its own
    batch_size: int = 8  # refined pictures (and real crops) per step
    lr: float = 2e-4  # Adam, both networks
    adv_weight: float = 1.0  # the adversarial term's weight once ramped up
    adv_warmup_steps: int = 1000  # steps over which it rises linearly from zero
    keep_weight: float = 20.0  # L1 of the 4x4-averaged picture against the MSE picture
    match_weight: float = 10.0  # feature matching against the face a reconstruction or file stands for
    code_weight: float = 2.0  # the AE encoder's code of the refined picture against its face's
    r1_gamma: float = 1.0  # weight of the R1 penalty (gradient norm of the critic on real crops)
    r1_every: int = 4  # steps between R1 penalties (each counted r1_every times)
    ema: float = 0.999  # decay of the exported moving average of the refiner's weights
    sample_every: int = 250  # steps between sample sheets (out/samples)
    checkpoint_seconds: float = 300.0  # seconds between checkpoints
    seed: int = 0  # initialisation, pool, batches


# The pool of MSE pictures -------------------------------------------------------------------------


def _file_picture_code(model: LoadedModel, code: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The code a small .fcz base layer decodes to: the best base file of a random budget."""
    best = None
    for latent in model.network.cfg.ladder[:4]:
        file = compress_code(model, code[:latent], max_bytes=int(rng.choice(FILE_BUDGETS)))
        if best is None or file.latent > best.latent:
            best = file
    return decode_code(best.data, {model.kind: model})[1]


def pool_codes(loaded: LoadedModel, codes: torch.Tensor, kinds: list[str], rng: np.random.Generator) -> torch.Tensor:
    """One code per training code, made as POOL_MIX's kind says (see the module notes)."""
    model, out = loaded.network, torch.zeros_like(codes)
    n_dirs = len(model.cfg.directions)
    for i, kind in enumerate(kinds):
        z = codes[i]
        if kind == "reconstruction":
            latent = int(rng.choice(model.cfg.ladder))
            out[i, :latent] = z[:latent]
        elif kind == "file":
            out[i] = torch.from_numpy(_file_picture_code(loaded, z.double().numpy(), rng)).float()
        elif kind == "edit" and n_dirs:
            j = int(rng.integers(n_dirs))
            out[i] = z + float(rng.uniform(-3, 3)) * model.direction_std[j] * model.direction_vector(j)
        elif kind == "morph":
            other = codes[int(rng.integers(len(codes)))]
            out[i] = slerp(z, other, float(rng.uniform(0.2, 0.8)), model.latent_mean.float())
        else:  # a sampled code; the AE's prior is not a face distribution, so it uses its fitted sampler
            source = "prior" if model.cfg.kind == "vae" and rng.random() < 0.5 else "fitted"
            gen = torch.Generator().manual_seed(int(rng.integers(2**31)))
            out[i] = model.sample_codes(1, source, float(rng.uniform(0.6, 1.1)), gen)[0]
    return out


def build_pool(models: dict[str, LoadedModel], crops: torch.Tensor, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, 3, 128, 128) uint8 MSE pictures, one per training crop, alternating the models, and
    whether each stands for its crop (PAIRED)."""
    rng = np.random.default_rng(seed)
    names, shares = list(POOL_MIX), list(POOL_MIX.values())
    pool, paired = torch.zeros_like(crops), torch.zeros(len(crops), dtype=torch.bool)
    for m, (kind, model) in enumerate(sorted(models.items())):
        rows = torch.arange(m, len(crops), len(models))
        codes = all_codes(model.network, crops[rows])
        kinds = list(rng.choice(names, size=len(rows), p=shares))
        paired[rows] = torch.tensor([k in PAIRED for k in kinds])
        made = pool_codes(model, codes, kinds, rng)
        for start in range(0, len(rows), 256):
            pictures = preview_decode(model.network, made[start : start + 256])
            pool[rows[start : start + 256]] = (pictures * 255).round().to(torch.uint8)
        print(f"pool: {len(rows)} {kind} pictures", flush=True)
    return pool, paired


def load_or_build_pool(
    cfg: SharpTrainConfig, crops: torch.Tensor, models: dict[str, LoadedModel]
) -> tuple[torch.Tensor, torch.Tensor]:
    path, paired_path = Path(cfg.out) / "pool.npy", Path(cfg.out) / "pool_paired.npy"
    if path.exists() and paired_path.exists():
        return torch.from_numpy(np.load(path)), torch.from_numpy(np.load(paired_path))
    pool, paired = build_pool(models, crops, cfg.seed)
    np.save(path, pool.numpy())
    np.save(paired_path, paired.numpy())
    return pool, paired


# Training -----------------------------------------------------------------------------------------


@dataclass
class Networks:
    """What train-sharp trains (the refiner, its discriminator, the refiner's moving average, two
    optimisers) and the frozen encoder that reads what a face shows."""

    refiner: Refiner
    disc: PatchDiscriminator
    ema: Refiner  # the exported weights
    opt_g: torch.optim.Optimizer  # the refiner's
    opt_d: torch.optim.Optimizer  # the discriminator's
    reader: FaceAE  # the shipped AE, frozen: its encoder's codes (code_weight)

    def checkpointed(self) -> tuple[dict, dict]:
        """The networks and the optimisers by the names their checkpoint keys carry."""
        networks = {"refiner": self.refiner, "disc": self.disc, "ema": self.ema}
        return networks, {"refiner": self.opt_g, "disc": self.opt_d}


def build_networks(cfg: SharpTrainConfig, reader: FaceAE) -> Networks:
    refiner, disc = Refiner(RefinerConfig()), PatchDiscriminator()
    ema = copy.deepcopy(refiner).requires_grad_(False)
    opt_g = torch.optim.Adam(refiner.parameters(), lr=cfg.lr, betas=(0.5, 0.9))
    opt_d = torch.optim.Adam(disc.parameters(), lr=cfg.lr, betas=(0.5, 0.9))
    return Networks(refiner, disc, ema, opt_g, opt_d, reader.eval().requires_grad_(False))


def train_sharp(cfg: SharpTrainConfig) -> Path:
    """Train until cfg.minutes have passed; returns the exported refiner's path (out/sharp.safetensors)."""
    torch.manual_seed(cfg.seed)
    out = Path(cfg.out)
    (out / "samples").mkdir(parents=True, exist_ok=True)
    crops = load_crops(cfg.data)
    models, _ = load_models()
    pool, paired = load_or_build_pool(cfg, crops, models)
    nets = build_networks(cfg, models["ae"].network)
    last = out / "last.ckpt.safetensors"
    meta = load_checkpoint(last, *nets.checkpointed()) if last.exists() else {"step": 0, "minutes": 0.0, "log": []}
    for net in (nets.refiner, nets.disc, nets.ema):
        net.to(memory_format=torch.channels_last)
    step, minutes_before = meta["step"], meta["minutes"]
    generator = torch.Generator().manual_seed(cfg.seed + step)
    fixed = to_float(pool[torch.arange(0, len(pool), len(pool) // 8)[:8]], CPU)
    real_check = to_float(crops[torch.randperm(len(crops), generator=generator)[:256]], CPU)
    started, last_save, running = time.time(), time.time(), dict.fromkeys(("d", "adv", "keep", "match", "code"), 0.0)

    def minutes() -> float:  # this run's and every earlier session's
        return minutes_before + (time.time() - started) / 60

    def save() -> None:
        save_checkpoint(last, *nets.checkpointed(), dict(meta, step=step, minutes=minutes(), config=asdict(cfg)))

    while time.time() - started < cfg.minutes * 60:
        batch = training_batch(pool, paired, crops, cfg.batch_size, generator)
        losses = train_step(cfg, nets, batch, step)
        step += 1
        for key, value in losses.items():
            running[key] = 0.98 * running[key] + 0.02 * float(value.detach())
        if step % cfg.sample_every == 0:
            energy = sample(nets.ema, fixed, pool, real_check, out / "samples" / f"step{step:06d}.png")
            entry = dict(step=step, minutes=round(minutes(), 1), energy=energy)
            entry |= {k: round(v, 4) for k, v in running.items()}
            meta["log"].append(entry)
            print(json.dumps(entry), flush=True)
        if time.time() - last_save > cfg.checkpoint_seconds:
            save()
            last_save = time.time()
    save()
    return export_refiner(nets.ema, out / "sharp.safetensors", dict(meta, step=step, minutes=minutes()), cfg)


@dataclass
class Batch:
    x_in: torch.Tensor  # MSE pictures to refine
    source: torch.Tensor  # the training crop each picture was made from (mirrored alike)
    paired: torch.Tensor  # (N,) bool: the picture stands for its source (PAIRED)
    real: torch.Tensor  # other real crops, for the discriminator


def training_batch(
    pool: torch.Tensor, paired: torch.Tensor, crops: torch.Tensor, batch_size: int, generator: torch.Generator
) -> Batch:
    """MSE pictures with their source crops, and real crops, each mirrored at random."""
    rows = torch.randint(len(pool), (batch_size,), generator=generator)
    flip = torch.rand(batch_size, generator=generator) < 0.5
    x_in, source = (to_float(_flip(t[rows], flip), CPU) for t in (pool, crops))
    real = crops[torch.randint(len(crops), (batch_size,), generator=generator)]
    real_flip = torch.rand(batch_size, generator=generator) < 0.5
    return Batch(x_in, source, paired[rows], to_float(_flip(real, real_flip), CPU))


def _flip(x: torch.Tensor, flip: torch.Tensor) -> torch.Tensor:
    return torch.where(flip.reshape(-1, 1, 1, 1), x.flip(3), x)


def train_step(cfg: SharpTrainConfig, nets: Networks, batch: Batch, step: int) -> dict:
    """A discriminator step, a refiner step, then the moving average; returns the loss terms."""
    x_in, real = batch.x_in, batch.real
    with autocast(CPU):
        fake = nets.refiner(x_in)
        d_loss = F.softplus(-nets.disc(real)).mean() + F.softplus(nets.disc(fake.detach())).mean()
    nets.opt_d.zero_grad(set_to_none=True)
    (d_loss.float() + r1_penalty(cfg, nets.disc, real, step)).backward()
    nets.opt_d.step()
    with autocast(CPU):
        fake_features = nets.disc.features(fake)
        adv = F.softplus(-fake_features[-1]).float().mean()
        match = feature_match(nets.disc, fake_features[:-1], batch) if cfg.match_weight else torch.zeros(())
    keep = (low_pass(fake.float()) - low_pass(x_in)).abs().mean()
    code = code_distance(nets.reader, fake.float(), batch) if cfg.code_weight else torch.zeros(())
    ramp = min(1.0, step / max(1, cfg.adv_warmup_steps))
    g_loss = ramp * (cfg.adv_weight * adv + cfg.match_weight * match) + cfg.keep_weight * keep + cfg.code_weight * code
    nets.opt_g.zero_grad(set_to_none=True)
    g_loss.backward()
    nets.opt_g.step()
    with torch.no_grad():
        for p_ema, p in zip(nets.ema.parameters(), nets.refiner.parameters(), strict=True):
            p_ema.lerp_(p, 1 - cfg.ema)
    return {"d": d_loss, "adv": adv, "keep": keep, "match": match, "code": code}


def code_distance(reader: FaceAE, fake: torch.Tensor, batch: Batch) -> torch.Tensor:
    """Mean squared difference, in units of training codes' spread, between the reader's codes of the
    refined pictures and of the faces they stand for: the source crop where paired, else the MSE picture."""
    with torch.no_grad():
        target = reader.code(torch.where(batch.paired.reshape(-1, 1, 1, 1), batch.source, batch.x_in))
    spread = reader.latent_std.float()
    return ((reader.code(fake) - target) / spread).pow(2).mean()


def feature_match(disc: PatchDiscriminator, fake_features: list[torch.Tensor], batch: Batch) -> torch.Tensor:
    """Mean over the hidden layers of the L1 between the refined pictures' activations and their
    source crops', over the pictures that stand for their source (zero when none does)."""
    if not batch.paired.any():
        return torch.zeros(())
    with torch.no_grad():
        target = disc.features(batch.source[batch.paired])[:-1]
    terms = [(f[batch.paired].float() - t.float()).abs().mean() for f, t in zip(fake_features, target, strict=True)]
    return torch.stack(terms).mean()


def r1_penalty(cfg: SharpTrainConfig, disc: PatchDiscriminator, real: torch.Tensor, step: int) -> torch.Tensor:
    """gamma/2 * E|grad D(real)|^2, every r1_every steps (scaled up to match): keeps the critic's
    answer from changing sharply on real faces, which keeps the game stable without normalising D."""
    if cfg.r1_gamma <= 0 or step % cfg.r1_every:
        return torch.zeros(())
    real = real.detach().requires_grad_(True)
    # Each picture's mean patch logit: a sum over its patches would scale the penalty with their
    # number and flatten the critic.
    (grad,) = torch.autograd.grad(disc(real).mean(dim=1).sum(), real, create_graph=True)
    return cfg.r1_gamma / 2 * grad.pow(2).flatten(1).sum(1).mean() * cfg.r1_every


# Samples and the export ---------------------------------------------------------------------------


def sample(ema: Refiner, fixed: torch.Tensor, pool: torch.Tensor, real_check: torch.Tensor, sheet: Path) -> float:
    """Save a sample sheet of the `fixed` pictures to `sheet`; returns the detail energy of the refined
    start of the pool against the real crops `real_check` (facecomp.measure.realism)."""
    to_pil(sample_sheet(ema, fixed)).save(sheet)
    with torch.no_grad():
        return detail_energy(ema(to_float(pool[:256], CPU)), real_check)


def sample_sheet(refiner: Refiner, inputs: torch.Tensor) -> torch.Tensor:
    """Rows of MSE pictures above their refined pictures, as one (3, H, W) image."""
    with torch.no_grad():
        refined = refiner(inputs)
    rows = torch.cat([torch.cat(list(inputs), 2), torch.cat(list(refined), 2)], 1)
    return rows


def export_refiner(refiner: Refiner, path: Path, meta: dict, cfg: SharpTrainConfig) -> Path:
    """The refiner's weights in half precision beside a model card."""
    what = "the sharp decoding: a refiner of the AE's and VAE's MSE pictures (facecomp.nets.refiner)"
    log = meta.get("log", [])[-20:]
    card = training_card(CARD_NAMES, asdict(cfg), meta.get("minutes", 0.0), CPU, what=what, steps=meta["step"], log=log)
    save_refiner(refiner, path, card)
    return path
