"""The detail layer: exact integer entropy model, .fcz version 2 files, byte budgets, training surgery."""

from __future__ import annotations

import binascii
import json
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from facecomp.__main__ import main
from facecomp.codec import budget, fcz
from facecomp.codec import format as fcz_format
from facecomp.codec.detail_coder import IntegerConv, IntegerHyper, scale_grid, scale_table
from facecomp.nets.detail import SCALE_LEVELS, DetailConfig, DetailLayer
from facecomp.training.detail import DetailTrainConfig, with_lower_lambdas
from facecomp.weights import export_detail, load_models, tensors_to_file

from .conftest import generated_faces, make_tiny_weights

SHIPPED = Path(__file__).resolve().parent.parent / "weights"

TINY_DETAIL = {"channels": 8, "latent_channels": 8, "hyper_channels": 4, "context_channels": 4}


def tiny_detail_layer(kind: str, seed: int = 0) -> DetailLayer:
    torch.manual_seed(seed)
    layer = DetailLayer(DetailConfig(base_kind=kind, **TINY_DETAIL))
    with torch.no_grad():  # an untrained net predicts sigma ~ 1 everywhere: spread the scales like a trained one
        layer.hyper_synthesis[-1].bias[layer.cfg.latent_channels :].uniform_(-2, 2)
    return layer


@pytest.fixture(scope="module")
def detail_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Tiny AE and VAE with tiny detail layers shipped beside them, as export-detail writes them."""
    folder = make_tiny_weights(tmp_path_factory.mktemp("detail_weights"))
    for kind in ("ae", "vae"):
        checkpoint = folder / f"checkpoint-{kind}.safetensors"
        layer = tiny_detail_layer(kind)
        tensors_to_file(layer.state_dict(), checkpoint, {"config": json.dumps(layer.cfg.to_dict())})
        checkpoint.with_suffix(".json").write_text(json.dumps({"steps": 0}))
        export_detail(checkpoint, folder)
    return folder


@pytest.fixture(scope="module")
def models(detail_weights: Path) -> dict:
    return load_models(detail_weights)[0]


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(10 * torch.log10(1 / ((a - b) ** 2).mean()))


def _reference_conv(x: np.ndarray, w: np.ndarray, b: np.ndarray, padding: int) -> np.ndarray:
    """Stride-1 convolution in Python integers (no overflow, no rounding), slowly."""
    xp = np.pad(x, ((0, 0), (padding, padding), (padding, padding))).astype(object)
    k = w.shape[-1]
    h, wd = xp.shape[1] - k + 1, xp.shape[2] - k + 1
    out = np.empty((len(w), h, wd), dtype=object)
    for o in range(len(w)):
        for i in range(h):
            for j in range(wd):
                out[o, i, j] = int((xp[:, i : i + k, j : j + k] * w[o].astype(object)).sum()) + int(b[o])
    return out


def _reference_deconv(x: np.ndarray, w: np.ndarray, b: np.ndarray, padding: int, output_padding: int) -> np.ndarray:
    """Stride-2 transposed convolution by scattering each input into the output, in Python integers."""
    c, h, wd = x.shape
    k = w.shape[-1]
    size = 2 * (h - 1) - 2 * padding + k + output_padding
    full = np.zeros((w.shape[1], size + 2 * padding + k, size + 2 * padding + k), dtype=object)
    for ci in range(c):
        for i in range(h):
            for j in range(wd):
                full[:, 2 * i : 2 * i + k, 2 * j : 2 * j + k] += int(x[ci, i, j]) * w[ci].astype(object)
    return full[:, padding : padding + size, padding : padding + size] + b.astype(object)[:, None, None]


@pytest.mark.parametrize("scale", [20, 40])  # 2^20 inputs run in float64, 2^40 ones must fall back to int64
def test_integer_convolutions_are_exact(scale: int):
    rng = np.random.default_rng(scale)
    x = rng.integers(-(2**scale), 2**scale, size=(5, 4, 4))
    w = rng.integers(-(2**16), 2**16, size=(6, 5, 3, 3))
    b = rng.integers(-(2**30), 2**30, size=6)
    assert np.array_equal(IntegerConv(w, b, 1)(x), _reference_conv(x, w, b, 1).astype(np.int64))
    wt = rng.integers(-(2**16), 2**16, size=(5, 6, 5, 5))  # transposed: (in, out, k, k)
    got = IntegerConv(wt, b, 2, output_padding=1)(x)
    assert got.shape == (6, 8, 8)
    assert np.array_equal(got, _reference_deconv(x, wt, b, 2, 1).astype(np.int64))


def test_integer_hyper_matches_the_float_network():
    layer = tiny_detail_layer("ae").eval()
    hyper = IntegerHyper(layer, scale_grid())
    rng = np.random.default_rng(1)
    z = rng.integers(-3, 4, size=(4, 2, 2))
    base = rng.integers(-20, 21, size=128)
    quality = 13  # between two trained gains
    mu, index = hyper(z, base, quality)
    with torch.no_grad():
        gain, _ = layer.gains(torch.tensor([quality]))
        hyper_in = layer.hyper_input(torch.from_numpy(z).float()[None], torch.from_numpy(base).float()[None])
        mu_f, log_sigma = layer.hyper_synthesis(hyper_in).double().chunk(2, 1)
    sigma = (log_sigma.exp() * gain.double())[0].numpy()
    nearest = np.abs(np.log(sigma)[..., None] - np.log(scale_table())).argmin(-1)
    assert np.abs(index - nearest).max() <= 1
    assert (index == nearest).mean() > 0.95
    assert np.allclose(mu, (mu_f * gain.double())[0].numpy(), atol=0.02)
    assert index.min() >= 0 and index.max() < SCALE_LEVELS


def test_detail_file_round_trip(models):
    x = generated_faces(1, seed=4)[0]
    low, high = fcz.compress_detail(models["ae"], x, 0), fcz.compress_detail(models["ae"], x, 28)
    assert low.detail_quality == 0 and low.label == "latent 128 + detail 0"
    assert low.data[5] & fcz_format.DETAIL_FLAG and low.data[6] == 0
    assert len(high.data) > len(low.data)
    for result in (low, high):
        assert abs(len(result.data) - result.estimated_bits / 8) < 8  # the estimate is the real coder's cost
        image = fcz.decompress(result.data, models)
        assert image.shape == (3, 128, 128) and 0 <= image.min() and image.max() <= 1
        kind, base_code = fcz.decode_code(result.data, models)
        assert kind == "ae" and np.count_nonzero(base_code[128:]) == 0


def test_detail_file_needs_its_detail_weights(models, tiny_weights):
    data = fcz.compress_detail(models["vae"], generated_faces(1, seed=5)[0], 8).data
    base_only, _ = load_models(tiny_weights)
    with pytest.raises(fcz_format.CodecError, match="has a detail layer"):
        fcz.decompress(data, base_only)
    tampered = bytearray(data)
    tampered[7] ^= 0xFF  # the detail weights tag
    body = bytes(tampered[:-2])
    with pytest.raises(fcz_format.CodecError, match="detail layer was made by other weights"):
        fcz.decompress(body + struct.pack(">H", binascii.crc_hqx(body, 0)), models)


def _with_version(data: bytes, version: int) -> bytes:
    body = bytearray(data[:-2])
    body[2] = version << 4 | (body[2] & 0x0F)
    return bytes(body) + struct.pack(">H", binascii.crc_hqx(bytes(body), 0))


def test_version_1_files_still_decode_and_future_ones_are_refused(models):
    x = generated_faces(1, seed=6)[0]
    current = fcz.compress(models["ae"], x, 64).data
    assert current[2] >> 4 == fcz_format.VERSION == 2
    old = _with_version(current, 1)
    assert torch.equal(fcz.decompress(old, models), fcz.decompress(current, models))
    with pytest.raises(fcz_format.CodecError, match="unsupported format version 3"):
        fcz.decompress(_with_version(current, 3), models)


def test_compress_within_holds_every_budget(models):
    x = generated_faces(1, seed=7)[0]
    previous = -1.0
    for max_bytes in (24, 64, 256, 1024, 2048):
        result = budget.compress_within(models, x, max_bytes)
        assert len(result.data) <= max_bytes
        quality = psnr(fcz.decompress(result.data, models), x)
        assert quality >= previous - 1e-6  # a larger budget never decodes worse: it keeps every candidate
        previous = quality
    only_vae = budget.compress_within({"vae": models["vae"]}, x, 512)
    assert only_vae.kind == "vae"
    too_small = budget.compress_within(models, x, 4)
    assert len(too_small.data) > 4  # nothing fits: the smallest file, and the caller sees it is over


def test_best_within_returns_the_decoders_picture(models):
    """Candidates are ranked on previews; the picture handed back must be the one decompress gives."""
    x = generated_faces(1, seed=7)[0]
    for max_bytes in (64, 1024):
        file, picture = budget.best_within(models, x, max_bytes)
        assert torch.equal(picture, fcz.decompress(file.data, models))
    # The detail candidate's picture is computed on the encoder's side (it wins with trained weights).
    ae = models["ae"]
    file, picture = budget.finest_detail_within(ae, x, fcz.encode_latent(ae, x), 1024)
    assert file.detail_quality is not None and torch.equal(picture, fcz.decompress(file.data, models))


def test_compress_cli_max_bytes(detail_weights, tmp_path, capsys):
    photo = tmp_path / "face.png"
    from facecomp.visual import to_pil

    to_pil(generated_faces(1, seed=8)[0]).save(photo)
    out = tmp_path / "out"
    common = ["--weights", str(detail_weights), "--out", str(out)]
    assert main(["compress", str(photo), "--max-bytes", "300", *common]) == 0
    data = (out / "face.fcz").read_bytes()
    assert len(data) <= 300
    assert "latent" in capsys.readouterr().out
    assert main(["compress", str(photo), "--max-bytes", "5", *common]) == 2
    assert "no file fits 5 bytes" in capsys.readouterr().err


def test_lower_lambdas_surgery_keeps_trained_gains():
    layer = tiny_detail_layer("ae")
    grown = with_lower_lambdas(layer, (0.0002, 0.0009))
    assert grown.cfg.lambdas == (0.0002, 0.0009, *layer.cfg.lambdas)
    assert torch.equal(grown.log_gain[2:], layer.log_gain)
    # Initial gains follow the trained trend: smaller lambdas, smaller gains.
    assert (grown.log_gain[0] < grown.log_gain[1]).float().mean() > 0.9
    assert (grown.log_gain[1] < grown.log_gain[2]).float().mean() > 0.9


def test_train_detail_cli_reaches_the_config(monkeypatch, tmp_path):
    seen: list[DetailTrainConfig] = []
    monkeypatch.setattr("facecomp.training.detail.train_detail", lambda cfg: seen.append(cfg) or [])
    args = ["train-detail", "--bases", "vae", "standalone", "--minutes", "7", "--batch-size", "12", "--lr", "0.01"]
    args += ["--resume", str(tmp_path), "--lower-lambdas", "0.0002", "0.0009", "--out", str(tmp_path / "o")]
    assert main(args) == 0
    cfg = seen[0]
    assert cfg.bases == ("vae", "") and cfg.minutes == 7 and cfg.batch == 12 and cfg.lr == 0.01
    assert cfg.resume == tmp_path and cfg.lower_lambdas == (0.0002, 0.0009)


def test_training_step_lowers_the_loss(tmp_path, detail_weights):
    """A few steps on one batch reduce rate + distortion (the loss has working gradients)."""
    from facecomp.training.detail import FrozenBase

    models, _ = load_models(detail_weights)
    layer = tiny_detail_layer("ae").train()
    base = FrozenBase(models["ae"].network, 128, 8, "cpu")
    x = generated_faces(4, seed=9)
    pictures, symbols = base(x)
    quality = torch.tensor([0, 8, 16, 28])
    optimizer = torch.optim.Adam(layer.parameters(), lr=3e-3)
    losses = []
    torch.manual_seed(0)
    for _ in range(30):
        loss = layer.loss(layer(x, pictures, symbols, quality), quality)["loss"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert np.mean(losses[-5:]) < 0.7 * np.mean(losses[:5])


def test_export_refuses_a_tampered_file(detail_weights, tmp_path):
    folder = tmp_path / "w"
    shutil.copytree(detail_weights, folder)
    path = folder / "detail-ae.safetensors"
    data = path.read_bytes()
    path.write_bytes(data[:-1] + bytes([data[-1] ^ 0xFF]))
    from facecomp.weights import WeightsError

    with pytest.raises(WeightsError, match="do not match"):
        load_models(folder)


@pytest.mark.slow
@pytest.mark.skipif(not (SHIPPED / "vae.safetensors").exists(), reason="no shipped weights")
def test_budget_search_shortcuts_pick_the_files_the_full_search_picks(monkeypatch: pytest.MonkeyPatch) -> None:
    """With the shipped weights (whose detail layer wins from ~128 bytes up) on the built-in
    photos' faces: the search that skips what cannot win and starts at the last face's quality
    gives the full search's files, byte for byte, and does skip at the larger budgets."""
    from facecomp import comparison
    from facecomp.visual import to_tensor

    shipped = load_models(SHIPPED)[0]
    photos = [comparison.open_photo(read()) for read in comparison.BUILTIN_PHOTOS.values()]
    faces = [to_tensor(comparison.choose_crop(photo, 0)) for photo in photos]
    ranked, rank, skipped = [], budget.base_candidates, 0
    monkeypatch.setattr(budget, "base_candidates", lambda *args: ranked.append(args[2]) or rank(*args))
    for x in faces:
        for max_bytes in (48, 128, 256, 1024):
            ranked.clear()
            quick = budget.compress_within(shipped, x, max_bytes).data
            skipped += not ranked
            with monkeypatch.context() as full:
                full.setattr(budget, "DETAIL_CLEARLY_AHEAD", -1.0)
                full.setattr(budget, "_last_detail_quality", {})
                assert budget.compress_within(shipped, x, max_bytes).data == quick, max_bytes
    assert skipped >= 2 * len(faces)  # at 256 and 1,024 bytes no base-only candidate was decoded
