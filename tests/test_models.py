"""Models, weights files, a tiny end-to-end prepare + train, and the evaluation JSON."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image, ImageEnhance

from facecomp.__main__ import main
from facecomp.data import is_validation
from facecomp.faces import canonical_crop
from facecomp.measure.metrics import psnr
from facecomp.nets.autoencoder import ModelConfig, build_model, reconstruction_terms
from facecomp.spec import LATENT_LADDER
from facecomp.visual import to_pil, to_tensor
from facecomp.weight_files import weights_path
from facecomp.weights import WeightsError, load_model, measured_weights, save_model

from .conftest import TINY_CHANNELS, generated_faces

SHIPPED = Path(__file__).resolve().parent.parent / "weights"


@pytest.mark.parametrize("kind", ["ae", "vae"])
def test_shapes_ranges_and_nested_codes(kind: str) -> None:
    torch.manual_seed(0)
    model = build_model(ModelConfig(kind=kind, channels=TINY_CHANNELS))
    x = generated_faces(4)
    out = model(x, torch.tensor([16, 64, 256, 512]))
    assert out["recon"].shape == x.shape
    assert 0 <= out["recon"].min() and out["recon"].max() <= 1
    # A latent size k keeps exactly the first k numbers of the code.
    assert (out["z"][0, 16:] == 0).all() and (out["z"][2, 256:] == 0).all()
    model.eval()
    for k in LATENT_LADDER:
        assert model.reconstruct(x, k).shape == x.shape
    terms = model.loss(out, x, kl_weight=0.01)
    expected = {"reconstruction", "total"} | ({"kl"} if kind == "vae" else set())
    assert set(terms) == expected and torch.isfinite(terms["total"])


def test_log_mse_objective_is_the_mean_log_mse_per_image() -> None:
    target = torch.zeros(2, 3, 4, 4)
    recon = torch.stack([torch.full((3, 4, 4), 0.1), torch.full((3, 4, 4), 0.01)])  # MSE 1e-2 and 1e-4
    mse, objective = reconstruction_terms(recon, target)
    assert torch.isclose(mse, objective) and torch.isclose(mse, torch.tensor(0.00505))
    mse, objective = reconstruction_terms(recon, target, log_mse=True)
    assert torch.isclose(mse, torch.tensor(0.00505))
    assert torch.isclose(objective, torch.tensor((math.log(1e-2) + math.log(1e-4)) / 2))


def test_vae_encode_sample_and_reparameterise() -> None:
    torch.manual_seed(0)
    vae = build_model(ModelConfig(kind="vae", channels=TINY_CHANNELS)).eval()
    mu, logvar = vae.encode(generated_faces(2))
    assert mu.shape == logvar.shape == (2, 512)
    samples = vae.sample(3, "prior", generator=torch.Generator().manual_seed(1))
    assert samples.shape == (3, 3, 128, 128)
    z1, z2 = vae.reparameterize(mu, logvar), vae.reparameterize(mu, logvar)
    assert not torch.equal(z1, z2)


def test_safetensors_round_trip_and_sha_check(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = build_model(ModelConfig(kind="ae", channels=TINY_CHANNELS)).eval()
    card = save_model(model, tmp_path / "ae.safetensors", card={"model": "ae"})
    assert (tmp_path / "ae.safetensors").read_bytes()[:8] != b"\x80\x04\x95"  # not a pickle
    loaded, loaded_card = load_model("ae", tmp_path)
    assert loaded_card["sha256"] == card["sha256"]
    x = generated_faces(2)
    with torch.inference_mode():
        # Weights are stored as float16; the reconstruction barely moves.
        assert (loaded.network.reconstruct(x, 64) - model.reconstruct(x, 64)).abs().max() < 2e-2


def test_altered_or_missing_weights_raise_a_clear_error(tmp_path: Path) -> None:
    model = build_model(ModelConfig(kind="vae", channels=TINY_CHANNELS))
    save_model(model, tmp_path / "vae.safetensors", card={"model": "vae"})
    path = weights_path("vae", tmp_path)
    data = bytearray(path.read_bytes())
    data[-100] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(WeightsError, match=r"vae\.safetensors.*facecomp train --model vae"):
        load_model("vae", tmp_path)
    path.unlink()
    with pytest.raises(WeightsError, match=r"vae\.safetensors is missing"):
        load_model("vae", tmp_path)


def _photo_tree(root: Path, astronaut: Image.Image, grace: Image.Image) -> None:
    """Variants of the two public-domain photos: crops, brightness, mirror."""
    root.mkdir()
    # File names picked so that the hash split puts 3 of the 24 on the validation side.
    val_names = [n for n in (f"photo_{i:03d}.jpg" for i in range(200)) if is_validation(Path(n))][:3]
    train_names = [n for n in (f"photo_{i:03d}.jpg" for i in range(200)) if not is_validation(Path(n))][:21]
    for i, name in enumerate(val_names + train_names):
        base = astronaut if i % 2 else grace
        img = ImageEnhance.Brightness(base).enhance(0.8 + 0.02 * i)
        if i % 3 == 0:
            img = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        img.save(root / name)
    (root / "broken.jpg").write_bytes(b"not a jpeg")


@pytest.mark.slow
def test_prepare_then_train_one_tiny_epoch_and_resume(tmp_path: Path, astronaut, grace_hopper, capsys) -> None:
    _photo_tree(tmp_path / "photos", astronaut, grace_hopper)
    cache = tmp_path / "cache"
    assert main(["prepare", str(tmp_path / "photos"), "--out", str(cache), "--workers", "1"]) == 0
    out = capsys.readouterr().out
    assert "skipped 1: unreadable" in out
    split = json.loads((cache / "split.json").read_text())
    assert len(split["train"]) == 21 and len(split["val"]) == 3
    # Prepared again: the cache is reused.
    main(["prepare", str(tmp_path / "photos"), "--out", str(cache), "--workers", "1"])
    assert "up to date" in capsys.readouterr().out

    from facecomp.training.autoencoder import TrainConfig, train

    cfg = TrainConfig(
        model="vae",
        data=str(cache),
        out=str(tmp_path / "runs"),
        epochs=1,
        batch_size=8,
        channels=TINY_CHANNELS,
        kl_weight=0.01,
    )
    final, _ = train(cfg)
    card = json.loads(final.with_suffix(".json").read_text())
    assert card["epochs"] == card["total_epochs"] == 1 and card["initialised_from"] is None
    assert set(card["validation_psnr"]) == {str(k) for k in LATENT_LADDER}
    assert card["history"][0]["train"]["kl"] > 0
    # A second run with more epochs resumes from the checkpoint instead of starting over.
    cfg.epochs = 2
    train(cfg)
    assert "resuming vae from epoch 1" in capsys.readouterr().out


@pytest.mark.slow
def test_evaluation_json_has_one_record_per_model_and_size(tiny_weights: Path, tmp_path: Path) -> None:
    crops = tmp_path / "crops"
    crops.mkdir()
    for i, face in enumerate(generated_faces(3)):
        to_pil(face).save(crops / f"face{i}.png")
    out = tmp_path / "evaluation.json"
    main(["evaluate", str(crops), "--json", str(out), "--weights", str(tiny_weights), "--codec-faces", "2"])
    result = json.loads(out.read_text())
    # The weights it measured, as Benchmarks compares them with the weights it loads.
    assert result["weights"] == {kind: measured_weights(kind, tiny_weights) for kind in ("ae", "vae")}
    assert result["weights"]["ae"]["codec_sha256"] == load_model("ae", tiny_weights)[1]["sha256"]
    assert len(result["records"]) == 2 * len(LATENT_LADDER)
    record = result["records"][0]
    assert {"model", "latent", "psnr", "ssim", "mse", "noisy", "bytes", "classic", "codec", "hist"} <= set(record)
    for stats in (record["psnr"], record["ssim"], record["mse"], record["noisy"]["psnr"]):
        assert set(stats) == {"mean", "median", "std"}
    assert set(record["classic"]) == {"JPEG", "WEBP", "AVIF", "HEIF", "JXL"}
    assert record["classic"]["JPEG"]["failed"] + record["classic"]["JPEG"]["fitted"] == 2
    assert result["rate_distortion"]["fcz"] and result["rate_distortion"]["classic"]


@pytest.mark.skipif(not (SHIPPED / "ae.json").exists(), reason="shipped weights not present")
def test_shipped_weights_reconstruct_a_real_face(astronaut: Image.Image) -> None:
    x = to_tensor(canonical_crop(astronaut)[0]).unsqueeze(0)
    for kind in ("ae", "vae"):
        model, card = load_model(kind)
        assert card["sha256"] and card["validation_psnr"]
        with torch.inference_mode():
            small, large = (
                psnr(model.network.reconstruct(x, 16)[0], x[0]),
                psnr(model.network.reconstruct(x, 256)[0], x[0]),
            )
        assert large > 20 and large > small, (kind, small, large)


@pytest.mark.skipif(not (SHIPPED / "evaluation.json").exists(), reason="shipped evaluation not present")
def test_shipped_evaluation_measured_the_shipped_weights() -> None:
    """Benchmarks and the README quote weights/evaluation.json: retrained weights need it measured again."""
    measured = json.loads((SHIPPED / "evaluation.json").read_text())["weights"]
    for kind in ("ae", "vae"):
        model, _ = load_model(kind)  # checks each file against its card
        assert measured[kind] == measured_weights(kind)
        assert measured[kind]["codec_sha256"] == model.codec_sha256  # the VAE's card names an older file's codec
        assert bytes.fromhex(measured[kind]["detail_sha256"][:4]) == model.detail_codec.tag


@pytest.mark.skipif(not (SHIPPED / "realism.json").exists(), reason="shipped realism report not present")
def test_shipped_realism_report_measured_the_shipped_weights() -> None:
    """Benchmarks, How it works and docs/results.md quote weights/realism.json: a retrained sharp
    decoding or model needs it measured again."""
    from facecomp.weight_files import sha256_file, sharp_path

    measured = json.loads((SHIPPED / "realism.json").read_text())["weights"]
    assert measured["sharp_sha256"] == (sha256_file(sharp_path()) if sharp_path().exists() else None)
    assert all(measured[kind] == measured_weights(kind) for kind in ("ae", "vae"))


@pytest.mark.slow
def test_train_cli_trains_with_the_study_options(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`facecomp train` with the study's options trains with them: the loss carries --l1 and --l2
    as weight penalties and --kl-weight on the KL term, and the card records every value."""
    from dataclasses import replace

    from facecomp.training import autoencoder as train_module

    from .test_distributed import write_tiny_cache

    cache = write_tiny_cache(tmp_path / "cache", n_train=16, n_val=2)  # 16: the principal components fitted
    # The command builds the full-size model; the same code trains a tiny one in seconds. Fitting
    # the code statistics (a minute here; tested above) is only recorded.
    build = train_module.build_model
    monkeypatch.setattr(train_module, "build_model", lambda cfg: build(replace(cfg, channels=TINY_CHANNELS)))
    fitted = []
    monkeypatch.setattr(train_module, "fit_and_save", lambda *args: fitted.append(args))
    out = tmp_path / "runs"
    study = ["--l1", "1e-5", "--l2", "1e-3", "--noise-sigma", "0.1", "--kl-weight", "0.05"]
    common = ["--data", str(cache), "--out", str(out), "--epochs", "1", "--batch-size", "8", "--lr", "1e-7"]
    assert main(["train", "--model", "vae", *common, *study]) == 0
    assert fitted == [(out / "vae" / "vae.safetensors", cache)]
    card = json.loads((out / "vae" / "vae.json").read_text())
    config = card["train_config"]
    assert (config["model"], config["l1"], config["l2"], config["noise_sigma"]) == ("vae", 1e-5, 1e-3, 0.1)
    assert config["kl_weight"] == card["kl_weight"] == 0.05
    terms = card["history"][0]["train"]
    assert terms["total"] == pytest.approx(terms["reconstruction"] + 0.05 * terms["kl"], rel=1e-4)
    # The run starts from seed 0's model and barely moves it (lr 1e-7): its penalty is the start's.
    torch.manual_seed(0)
    weights = [p for p in build_model(ModelConfig(kind="vae", channels=TINY_CHANNELS)).parameters() if p.ndim > 1]
    penalty = 1e-5 * sum(w.abs().sum() for w in weights) + 1e-3 * sum(w.pow(2).sum() for w in weights)
    assert terms["weight_penalty"] == pytest.approx(penalty.item(), rel=0.01)


def test_evaluate_update_replaces_only_the_retrained_models_rows() -> None:
    from facecomp.measure.evaluate import merge_into

    def rows(model: str, value: float) -> list[dict]:
        return [{"model": model, "latent": 16, "psnr": value}]

    def table(value: float, *codecs: str) -> list[dict]:
        return [{"codec": codec, "psnr": value} for codec in codecs]

    old = {
        "records": rows("ae", 1) + rows("vae", 2),
        "budgets": rows("ae", 1) + rows("vae", 2),
        "rate_distortion": {
            "fcz": rows("ae", 1) + rows("vae", 2),
            "detail": rows("ae", 1) + rows("vae", 2),
            "classic": [{"format": "JPEG"}],
        },
        "budget_table": table(1, "ae", "vae", "JPEG"),
        "weights": {"ae": {"codec_sha256": "a1"}, "vae": {"codec_sha256": "v1"}},
    }
    new = {
        "records": rows("vae", 3),
        "budgets": rows("vae", 3),
        "rate_distortion": {"fcz": rows("vae", 3), "detail": rows("vae", 3), "classic": []},
        "budget_table": table(3, "vae", "JPEG"),
        "weights": {"vae": {"codec_sha256": "v2"}},
    }
    merged = merge_into(old, new, ["vae"])
    assert merged["weights"] == {"ae": {"codec_sha256": "a1"}, "vae": {"codec_sha256": "v2"}}
    rd = merged["rate_distortion"]
    for part in (merged["records"], merged["budgets"], rd["fcz"], rd["detail"]):
        assert [(r["model"], r["psnr"]) for r in part] == [("ae", 1), ("vae", 3)]
    assert rd["classic"] == [{"format": "JPEG"}]  # the quality sweep is not re-measured
    assert [(r["codec"], r["psnr"]) for r in merged["budget_table"]] == [("ae", 1), ("vae", 3), ("JPEG", 3)]


def test_load_models_loads_every_kind_with_its_card(tiny_weights: Path) -> None:
    from facecomp.spec import MODEL_KINDS
    from facecomp.weights import load_models

    models, cards = load_models(tiny_weights)
    assert tuple(models) == tuple(cards) == MODEL_KINDS
    assert all(models[k].kind == k and cards[k]["sha256"] == models[k].codec_sha256 for k in MODEL_KINDS)
    only_vae, _ = load_models(tiny_weights, ["vae"])
    assert list(only_vae) == ["vae"]


@pytest.mark.slow
def test_home_example_imports_neither_torchs_compiler_nor_scipy() -> None:
    """The app's first page waits for loading the models and computing Home's example. torch's
    compiler (1.4 s: torch.eye on the meta device, where read_model builds models, imports it),
    scipy (0.2 s) and scikit-image must stay out of that path."""
    code = (
        "import sys; from facecomp import comparison as c, weights; models, _ = weights.load_models(); "
        "photo = c.open_photo(c.builtin_photo_bytes(next(iter(c.BUILTIN_PHOTOS)))); "
        "c.compare(c.choose_crop(photo, 0), models, 256, classic=(), measure=False); "
        "print(sorted(m for m in ('torch._dynamo', 'scipy', 'skimage') if m in sys.modules))"
    )
    env = {k: v for k, v in os.environ.items() if k != "FACECOMP_WEIGHTS_DIR"}  # the shipped weights
    out = subprocess.run([sys.executable, "-c", code], cwd=SHIPPED.parent, env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
