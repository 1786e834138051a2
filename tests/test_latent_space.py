"""The latent space: samplers, named directions, identity and FD-dlib, weight surgery, the sample CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageFilter

from facecomp.__main__ import main
from facecomp.codec import fcz
from facecomp.faces import canonical_crop
from facecomp.latent import explorer
from facecomp.latent.attributes import LabelDirection, Labelled, balanced_accuracy, fit_directions, logistic_direction
from facecomp.latent.statistics import fitted_cholesky, set_directions
from facecomp.measure import identity
from facecomp.measure.latent_report import edit_report
from facecomp.nets.autoencoder import ModelConfig, build_model
from facecomp.training.autoencoder import init_weights
from facecomp.visual import to_tensor
from facecomp.weights import load_model, read_model, save_model

from .conftest import TINY_CHANNELS, generated_faces


def test_fitted_sampler_draws_from_the_fitted_gaussian() -> None:
    torch.manual_seed(0)
    model = build_model(ModelConfig(kind="ae", max_latent=3, channels=TINY_CHANNELS))
    mix = torch.tensor([[2.0, 0.0, 0.0], [1.0, 1.0, 0.0], [0.0, -0.5, 0.3]])
    codes = torch.randn(20000, 3) @ mix.T + torch.tensor([1.0, -2.0, 0.5])
    model.latent_mean.copy_(codes.mean(0))
    model.latent_chol.copy_(fitted_cholesky(codes - codes.mean(0)))
    drawn = model.sample_codes(20000, "fitted", generator=torch.Generator().manual_seed(1))
    assert torch.allclose(drawn.mean(0), codes.mean(0), atol=0.05)
    assert torch.allclose(torch.cov(drawn.T), torch.cov(codes.T), atol=0.1)  # correlations kept, not just spreads
    cooler = model.sample_codes(20000, "fitted", temperature=0.5, generator=torch.Generator().manual_seed(1))
    assert torch.allclose(torch.cov(cooler.T), 0.25 * torch.cov(codes.T), atol=0.05)
    prior = model.sample_codes(20000, "prior", generator=torch.Generator().manual_seed(1))
    assert torch.allclose(torch.cov(prior.T), torch.eye(3), atol=0.05)
    with pytest.raises(ValueError, match="source"):
        model.sample_codes(1, "posterior")


def test_init_vae_from_vae_rescales_codes_but_keeps_reconstructions() -> None:
    torch.manual_seed(0)
    source = build_model(ModelConfig(kind="vae", channels=TINY_CHANNELS)).eval()
    source.latent_std.copy_(torch.linspace(0.5, 4.0, 512))
    plain = build_model(ModelConfig(kind="vae", channels=TINY_CHANNELS))
    init_weights(plain, source)
    assert all(torch.equal(a, b) for a, b in zip(plain.state_dict().values(), source.state_dict().values()))
    target = build_model(ModelConfig(kind="vae", channels=TINY_CHANNELS))
    init_weights(target, source, rescale_code=True)
    target.eval()
    x = generated_faces(2)
    with torch.inference_mode():
        assert torch.allclose(target.reconstruct(x, 64), source.reconstruct(x, 64), atol=1e-5)
        (mu_s, logvar_s), (mu_t, logvar_t) = source.encode(x), target.encode(x)
    assert torch.allclose(mu_t * source.latent_std, mu_s, atol=1e-5)  # unit spread per dimension
    assert torch.allclose(logvar_t, (logvar_s - 2 * source.latent_std.log()).clamp(-12, 6), atol=1e-4)


def test_old_weights_files_still_load(tmp_path: Path) -> None:
    """A file from before the fitted sampler (and with the retired age direction) loads for a fine-tune."""
    from safetensors.torch import load_file, save_file

    model = build_model(ModelConfig(kind="vae", channels=TINY_CHANNELS))
    save_model(model, tmp_path / "vae.safetensors")
    tensors = load_file(str(tmp_path / "vae.safetensors"))
    del tensors["latent_chol"]
    tensors["age_direction"] = torch.zeros(512)
    old_config = {k: v for k, v in model.cfg.to_dict().items() if k != "directions"}  # before named directions
    save_file(tensors, str(tmp_path / "old.safetensors"), metadata={"config": json.dumps(old_config)})
    old = read_model(tmp_path / "old.safetensors")
    assert torch.equal(old.latent_chol, torch.eye(512)) and old.cfg.directions == ()


def test_balanced_accuracy_ignores_class_balance() -> None:
    truth = np.array([1] * 9 + [0])
    assert balanced_accuracy(np.ones(10), truth) == 0.5  # always "yes": chance, whatever the share
    assert balanced_accuracy(truth, truth) == 1.0
    assert np.isnan(balanced_accuracy(np.ones(3), np.ones(3)))


def test_named_directions_are_learned_scored_and_stored(tmp_path: Path) -> None:
    gen = torch.Generator().manual_seed(0)
    n = 3000
    codes = torch.randn(n, 512, generator=gen)
    smiling = (codes[:, 3] + 0.1 * torch.randn(n, generator=gen) > 0.5).numpy().astype(np.int8)
    noise = (torch.rand(n, generator=gen) > 0.5).numpy().astype(np.int8)  # a label no direction predicts
    val = np.arange(n) % 4 == 0
    labelled = Labelled(torch.zeros(n, 3, 1, 1), np.stack([smiling, noise], 1), ["Smiling", "Noise"], val)
    ages = 40 + 10 * codes[:, 7]
    found = fit_directions(codes, labelled, val, (codes[~val], ages[~val].tolist(), codes[val], ages[val].tolist()))
    by_name = {d.name: d for d in found}
    assert by_name["Smiling"].accuracy > 0.85 and by_name["Noise"].accuracy < 0.65 and by_name["Age"].accuracy > 0.85
    unit = by_name["Smiling"].weight / by_name["Smiling"].weight.norm()
    assert unit[3] > 0.9  # the planted axis
    model = build_model(ModelConfig(kind="vae", channels=TINY_CHANNELS))
    set_directions(model, found)
    save_model(model, tmp_path / "vae.safetensors", card={"model": "vae"})
    loaded, _ = load_model("vae", tmp_path)
    assert loaded.network.cfg.directions == ("Smiling", "Noise", "Age")
    shown = explorer.named_directions(loaded.network)
    assert [d.name for d in shown] == ["Smiling", "Age"]  # "Noise" is below the bar


def test_edit_vectors_follow_the_read_back_gradient() -> None:
    """With a linear decoder A and encoder B, reading a move dz back gives dz A B, so the slider
    for classifier w must point along A B w, not along w: decoding drops what A cannot draw."""
    from facecomp.latent.statistics import edit_vectors

    gen = torch.Generator().manual_seed(2)
    n = 8
    decoder, encoder = torch.randn(n, 20, generator=gen), torch.randn(20, n, generator=gen)
    decoder[:, :10] *= 0.01  # half the picture barely reacts to the code

    class Linear(torch.nn.Module):
        def decode(self, z: torch.Tensor) -> torch.Tensor:
            return z @ decoder

        def code(self, x: torch.Tensor) -> torch.Tensor:
            return x @ encoder

    w = torch.randn(n, generator=gen)
    codes = torch.randn(32, n, generator=gen)
    (vector,) = edit_vectors(Linear(), [LabelDirection("Smiling", w, 0.0, 0.9)], codes, batch=16)
    expected = decoder @ encoder @ w
    assert torch.allclose(vector, expected / expected.norm(), atol=1e-5)
    assert float(vector @ (w / w.norm())) < 0.99  # not the classifier's normal


def test_logistic_direction_separates_a_planted_label() -> None:
    gen = torch.Generator().manual_seed(1)
    codes = torch.randn(400, 16, generator=gen) * torch.linspace(0.1, 10, 16)  # very different scales
    labels = (codes[:, 0] > 0).long()  # the smallest-scale axis decides
    w, b = logistic_direction(codes, labels)
    assert ((codes @ w + b > 0).long() == labels).float().mean() > 0.95


@pytest.fixture(scope="module")
def crops(astronaut: Image.Image, grace_hopper: Image.Image) -> dict[str, Image.Image]:
    return {"astronaut": canonical_crop(astronaut)[0], "grace": canonical_crop(grace_hopper)[0]}


def test_identity_tells_people_apart(crops: dict[str, Image.Image]) -> None:
    a, g = crops["astronaut"], crops["grace"]
    softer = a.filter(ImageFilter.GaussianBlur(1.0))
    desc = identity.descriptors([a, softer, g])
    same, other = identity.distances(desc[[0]], desc[[1]])[0], identity.distances(desc[[0]], desc[[2]])[0]
    assert same < identity.SAME_PERSON < other
    summary = identity.summary(np.array([same, other]))
    assert summary["kept"] == 0.5 and summary["median_distance"] == pytest.approx((same + other) / 2)
    tensors = torch.stack([to_tensor(a), to_tensor(g)])
    assert np.allclose(identity.descriptors(tensors), desc[[0, 2]], atol=1e-6)  # tensors or PIL alike


def test_torch_resnet_matches_dlib(crops: dict[str, Image.Image]) -> None:
    """The torch port of dlib's face ResNet gives dlib's own descriptors, on the same chips."""
    dlib, landmarks, resnet = identity._dlib_models()
    arrays = identity._as_uint8([crops["astronaut"], crops["grace"], crops["astronaut"].rotate(8)])
    chips = []
    for arr in arrays:
        found = dlib.full_object_detections()
        found.append(landmarks(arr, dlib.rectangle(*identity.MEASURE_BOX)))
        chips.append(dlib.get_face_chips(arr, found, size=150, padding=0.25)[0])
    theirs = dlib.face_recognition_model_v1(
        identity._model_file("dlib_face_recognition_resnet_model_v1.dat")
    ).compute_face_descriptor(chips)
    ours = resnet(np.stack(chips)).numpy()
    assert np.abs(ours - np.array([np.asarray(d) for d in theirs])).max() < 1e-5
    assert np.allclose(identity._descriptors_of(arrays), ours)


def test_frechet_distance() -> None:
    rng = np.random.default_rng(0)
    a = rng.normal(size=(3000, 4))
    assert identity.frechet_distance(a, a) == pytest.approx(0, abs=1e-6)
    shifted = a + np.array([0.5, 0, 0, 0])
    assert identity.frechet_distance(a, shifted) == pytest.approx(0.25, abs=1e-6)
    wider = 2 * a  # sigma 1 -> 2 on 4 axes: 4 * (1 + 4 - 2 * 2)
    assert identity.frechet_distance(a, wider) == pytest.approx(4.0, rel=0.05)


def test_edit_report_scores_each_named_direction(tiny_weights: Path) -> None:
    vae = load_model("vae", tiny_weights)[0].network
    direction = torch.randn(512, generator=torch.Generator().manual_seed(0))
    found = [LabelDirection("Smiling", direction, 0.0, 0.9)]
    set_directions(vae, found)
    images = (generated_faces(6) * 255).round().to(torch.uint8)
    labelled = Labelled(images, np.array([[1], [0], [1], [0], [1], [0]], np.int8), ["Smiling"], np.ones(6, bool))
    report = edit_report(vae, labelled, n_faces=6)
    row = report["Smiling"]
    assert row["faces"] == 6 and 0 <= row["flip_rate"] <= 1 and 0 <= row["identity_kept"] <= 1
    assert row["meets_edit_targets"] == (row["flip_rate"] >= 0.7 and row["identity_kept"] >= 0.8)


def test_code_from_fcz_gives_the_vae_code(tiny_weights: Path, crops: dict[str, Image.Image]) -> None:
    models = {kind: load_model(kind, tiny_weights)[0] for kind in ("ae", "vae")}
    x = to_tensor(crops["astronaut"])
    vae_file = fcz.compress(models["vae"], x, 64).data
    kind, code = fcz.decode_code(vae_file, models)
    assert kind == "vae" and torch.equal(explorer.code_from_fcz(vae_file, models), torch.from_numpy(code).float())
    assert not code[64:].any()  # the prefix only
    ae_file = fcz.compress(models["ae"], x, 64).data
    picture = fcz.decompress(ae_file, models)
    expected = models["vae"].network.code(picture.unsqueeze(0))[0]
    assert torch.allclose(explorer.code_from_fcz(ae_file, models), expected, atol=1e-5)


def test_sample_cli_writes_seeded_faces(weights_dir: Path, tmp_path: Path) -> None:
    def run(*extra: str) -> list[np.ndarray]:
        out = tmp_path / "_".join(extra)
        args = ["sample", "--model", "vae", "--n", "3", "--out", str(out), "--weights", str(weights_dir), *extra]
        assert main(args) == 0
        return [np.asarray(Image.open(p)) for p in sorted(out.glob("*.png"))]

    first = run("--seed", "1", "--from", "fitted", "--temperature", "0.7")
    assert len(first) == 3 and first[0].shape == (128, 128, 3)
    again = run("--seed", "1", "--from", "fitted", "--temperature", "0.7")
    assert all(np.array_equal(a, b) for a, b in zip(first, again))  # reproducible from the seed
    other = run("--seed", "2", "--from", "fitted", "--temperature", "0.7")
    assert not np.array_equal(first[0], other[0])


def test_train_cli_flags_reach_the_config(monkeypatch: pytest.MonkeyPatch) -> None:
    seen = {}
    monkeypatch.setattr("facecomp.training.autoencoder.train", lambda cfg: seen.setdefault("cfg", cfg))
    main(["train", "--model", "vae", "--data", "d", "--kl-weight", "0.2", "--kl-warmup-steps", "400", "--rescale-code"])
    cfg = seen["cfg"]
    assert (cfg.kl_weight, cfg.kl_warmup_steps, cfg.rescale_code, cfg.model) == (0.2, 400, True, "vae")
