"""The realism metric and the sharp decoding: what a bug in either would change."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from facecomp.measure import realism
from facecomp.nets.refiner import Refiner, low_pass, sharpen


def _smooth(x: torch.Tensor, passes: int = 3) -> torch.Tensor:
    for _ in range(passes):
        x = F.avg_pool2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), 3, 1)
    return x


def test_detail_share_of_white_noise_is_the_area_above_the_cutoff() -> None:
    noise = torch.rand(16, 3, 128, 128, generator=torch.Generator().manual_seed(0))
    share = float(realism.detail_share(noise).mean())
    expected = 1 - math.pi * realism.DETAIL_CUTOFF**2  # white noise: power spread evenly over the band
    assert share == pytest.approx(expected, abs=0.01)


def test_blur_lowers_detail_energy_and_a_copy_keeps_it() -> None:
    images = torch.rand(8, 3, 128, 128, generator=torch.Generator().manual_seed(1))
    images = _smooth(images, 1)  # some structure, some detail
    assert realism.detail_energy(images, images) == pytest.approx(1.0)
    assert realism.detail_energy(_smooth(images), images) < 0.5


@pytest.mark.slow
def test_two_sample_test_tells_blur_from_detail_and_not_a_set_from_itself() -> None:
    gen = torch.Generator().manual_seed(2)
    sharp = _smooth(torch.rand(160, 3, 64, 64, generator=gen), 1)
    other = _smooth(torch.rand(160, 3, 64, 64, generator=gen), 1)
    blurred = _smooth(other, 4)
    assert realism.two_sample_accuracy(sharp, blurred, seed=0, epochs=4) > 0.9
    assert realism.two_sample_accuracy(sharp, other, seed=0, epochs=4) < 0.7


def test_an_untrained_refiner_is_the_mse_decoding() -> None:
    x = torch.rand(2, 3, 128, 128, generator=torch.Generator().manual_seed(3))
    assert torch.equal(sharpen(Refiner(), x), x)
    assert sharpen(Refiner(), x[0]).shape == (3, 128, 128)


def test_the_refiner_keeps_within_the_unit_range_and_low_pass_averages() -> None:
    refiner = Refiner()
    torch.nn.init.normal_(refiner.head[-1].weight, std=1.0)
    x = torch.rand(2, 3, 128, 128, generator=torch.Generator().manual_seed(4))
    out = sharpen(refiner, x)
    assert not torch.equal(out, x) and out.min() >= 0 and out.max() <= 1
    assert torch.allclose(low_pass(x)[0, 0, 0, 0], x[0, 0, :4, :4].mean())


def test_decompress_sharp_needs_the_refiner_and_decodes_the_same_bytes(tiny_weights, tmp_path, capsys) -> None:
    import shutil

    import numpy as np

    from facecomp.__main__ import main
    from facecomp.codec import fcz
    from facecomp.faces import load_image
    from facecomp.visual import to_pil
    from facecomp.weight_files import sharp_path
    from facecomp.weights import load_models, load_refiner, save_refiner

    from .conftest import generated_faces

    folder = tmp_path / "weights"
    shutil.copytree(tiny_weights, folder)
    models, _ = load_models(folder)
    data = fcz.compress(models["ae"], generated_faces(1, seed=3)[0], 64).data
    (tmp_path / "face.fcz").write_bytes(data)

    def decode(out: str, *flags: str) -> int:
        return main(
            ["decompress", str(tmp_path / "face.fcz"), "--out", str(tmp_path / out), "--weights", str(folder), *flags]
        )

    assert decode("none", "--sharp") == 2 and "no sharp decoding" in capsys.readouterr().err
    refiner = Refiner()
    torch.nn.init.normal_(refiner.head[-1].weight, std=0.05, generator=torch.Generator().manual_seed(0))
    save_refiner(refiner, sharp_path(folder), {"what": "a test refiner"})
    assert decode("sharp", "--sharp") == 0 and decode("plain") == 0
    sharp, plain = (np.asarray(load_image(tmp_path / d / "face.png")) for d in ("sharp", "plain"))
    expected = np.asarray(to_pil(sharpen(load_refiner(folder), fcz.decompress(data, models))))
    assert np.array_equal(sharp, expected) and not np.array_equal(sharp, plain)
    assert np.array_equal(plain, np.asarray(to_pil(fcz.decompress(data, models))))


@pytest.mark.slow
def test_train_sharp_resumes_where_it_stopped_and_exports_a_loadable_refiner(tiny_weights, tmp_path, monkeypatch):
    import json

    import numpy as np

    from facecomp.training.sharp import SharpTrainConfig, train_sharp
    from facecomp.weights import load_refiner

    from .conftest import generated_faces

    monkeypatch.setenv("FACECOMP_WEIGHTS_DIR", str(tiny_weights))  # the pool's base models
    cache = tmp_path / "cache"
    cache.mkdir()
    faces = (generated_faces(12, seed=5) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    np.save(cache / "crops.npy", faces)
    (cache / "split.json").write_text(json.dumps({"train": list(range(10)), "val": [10, 11]}))
    cfg = SharpTrainConfig(data=str(cache), out=str(tmp_path / "run"), minutes=0.05, batch_size=2, sample_every=2)
    first = json.loads(train_sharp(cfg).with_suffix(".json").read_text())
    second = json.loads(train_sharp(cfg).with_suffix(".json").read_text())
    assert 0 < first["steps"] < second["steps"]  # the second run went on from the checkpoint
    assert len(np.load(tmp_path / "run" / "pool.npy")) == 10  # one MSE picture per training crop
    refiner = load_refiner(tmp_path / "run")
    assert isinstance(refiner, Refiner) and sharpen(refiner, torch.rand(3, 128, 128)).shape == (3, 128, 128)


def test_the_code_term_is_zero_at_its_target_and_reaches_the_refiner(tiny_weights) -> None:
    from facecomp.training.sharp import Batch, code_distance
    from facecomp.weights import load_models

    reader = load_models(tiny_weights)[0]["ae"].network.eval().requires_grad_(False)
    source, mse = torch.rand(2, 3, 128, 128), torch.rand(2, 3, 128, 128)
    batch = Batch(mse, source, torch.tensor([True, False]), source)
    targets = torch.stack([source[0], mse[1]])  # the crop where paired, else the MSE picture
    assert code_distance(reader, targets, batch) == 0
    refiner = Refiner()
    torch.nn.init.normal_(refiner.head[-1].weight, std=0.05)
    code_distance(reader, refiner(mse), batch).backward()
    assert refiner.head[-1].weight.grad.abs().sum() > 0


def test_sharp_decodings_replace_only_the_fcz_files_in_place(tiny_weights) -> None:
    from facecomp import comparison
    from facecomp.visual import to_pil
    from facecomp.weights import load_models

    from .conftest import generated_faces

    models, _ = load_models(tiny_weights)
    crop = to_pil(generated_faces(1, seed=2)[0])
    results = comparison.compare(crop, models, 256, classic=("JPEG",), measure=False)
    refiner = Refiner()
    torch.nn.init.normal_(refiner.head[-1].weight, std=0.05, generator=torch.Generator().manual_seed(0))
    sharp = comparison.with_sharp_decodings(crop, results, models, refiner, real_detail_share=0.05)
    assert [r.name for r in sharp] == ["Original", "AE sharp", "VAE sharp", "JPEG"]
    assert sharp[0] is results[0] and sharp[3] is results[3]
    for plain, refined in zip(results[1:3], sharp[1:3], strict=True):
        assert refined.data == plain.data and refined.png != plain.png and refined.psnr != plain.psnr
        assert refined.note.startswith(plain.note) and f"MSE decoding: {plain.psnr:.2f} dB" in refined.note
        assert refined.png_name.endswith("_sharp.png") and refined.extra["detail_energy"] > 0
        assert refined.identity is None  # the comparison was not measured, nor are its sharp decodings
    shown = comparison.side_by_side(results, sharp)
    assert [r.name for r in shown] == ["Original", "AE", "AE sharp", "VAE", "VAE sharp", "JPEG"]
