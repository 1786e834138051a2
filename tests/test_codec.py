"""The .fcz bitstream: round trips, the CLI, and every kind of bad input (fuzzed)."""

from __future__ import annotations

import struct
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from facecomp.__main__ import main
from facecomp.codec.budget import highest_fitting
from facecomp.codec.classic import classic_within, encode_classic, quality_range
from facecomp.codec.fcz import compress, decompress
from facecomp.codec.format import MAX_FILE_BYTES, CodecError
from facecomp.codec.pictures import exact_decoder, preview_decode
from facecomp.spec import CLASSIC_FORMATS
from facecomp.visual import to_pil, to_tensor
from facecomp.weights import load_model

from .conftest import generated_faces


@pytest.fixture(scope="module")
def models(tiny_weights: Path) -> dict:
    return {kind: load_model(kind, tiny_weights)[0] for kind in ("ae", "vae")}


@pytest.fixture(scope="module")
def valid_file(models) -> bytes:
    return compress(models["ae"], generated_faces(1, seed=3)[0], latent=64, q=8).data


@pytest.mark.parametrize("kind", ["ae", "vae"])
@pytest.mark.parametrize("latent", [16, 256, 512])
def test_round_trip_is_deterministic_and_matches_the_quantised_code(models, kind: str, latent: int) -> None:
    model = models[kind]
    x = generated_faces(1, seed=1)[0]
    first, second = compress(model, x, latent), compress(model, x, latent)
    assert first.data == second.data
    decoded = decompress(first.data, models)
    assert decoded.shape == (3, 128, 128) and 0 <= decoded.min() and decoded.max() <= 1
    assert torch.equal(decoded, decompress(first.data, models))
    # Finer quantisation costs bytes and brings the decode closer to the unquantised one.
    fine = compress(model, x, latent, q=0)
    with torch.inference_mode():
        exact = model.network.reconstruct(x.unsqueeze(0), latent)[0]
    assert len(fine.data) >= len(first.data)
    assert (decompress(fine.data, models) - exact).abs().max() <= (decoded - exact).abs().max() + 1e-6


def test_decoding_runs_in_float64_whatever_the_thread_count(models) -> None:
    """Cross-machine determinism rests on the float64 decoder (scripts/decode_determinism.py)."""
    model = models["vae"]
    data = compress(model, generated_faces(1, seed=5)[0], 256).data
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        single = decompress(data, models)
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(single, decompress(data, models)) and single.dtype == torch.float32
    assert all(p.dtype == torch.float64 for p in exact_decoder(model.network).parameters())
    assert all(p.dtype == torch.float32 for p in model.network.parameters())  # the app's model is left as it was


def test_preview_decode_is_the_decoder_within_a_few_levels(models) -> None:
    """The bfloat16 copy that ranks candidates and draws the explorer's faces: a short code is
    padded with zeros as FaceAE.decode pads it, and no pixel is more than a few 8-bit levels off."""
    model = models["ae"].network
    with torch.no_grad():
        short = model.code(generated_faces(2, seed=7))[:, :64]
        exact = model.decode(short)
    preview = preview_decode(model, short)
    assert preview.shape == exact.shape and preview.dtype == torch.float32
    assert (preview - exact).abs().max() <= 4 / 255
    assert all(p.dtype == torch.float32 for p in model.parameters())  # the app's model is left as it was


def test_byte_budget_picks_a_fitting_quantiser(models) -> None:
    x = generated_faces(1, seed=2)[0]
    loose = compress(models["ae"], x, 512, q=0)
    budget = max(12, len(loose.data) // 2)
    fitted = compress(models["ae"], x, 512, max_bytes=budget)
    assert len(fitted.data) <= budget and fitted.q > 0


def _probed(sizes: list[int]) -> tuple[Callable[[int], int], list[int]]:
    """A size_at for highest_fitting over `sizes`, and the qualities it was asked for."""
    asked: list[int] = []

    def size_at(q: int) -> int:
        asked.append(q)
        return sizes[q]

    return size_at, asked


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.integers(0, 400), min_size=1, max_size=64),
    st.integers(50, 20_000),
    st.floats(1.01, 1.5),
    st.one_of(st.none(), st.integers(-5, 70)),
)
def test_quality_search_finds_the_highest_fitting_quality(
    steps: list[int], max_bytes: int, growth: float, start: int | None
) -> None:
    """Any sizes that grow with quality (flat stretches and jumps too), any growth guess and any
    first guess (in range or not): the search finds what trying every quality would, and asks
    for each size at most once."""
    sizes = [100 + sum(steps[: q + 1]) for q in range(len(steps))]
    size_at, asked = _probed(sizes)
    fitting = [q for q, size in enumerate(sizes) if size <= max_bytes]
    found = highest_fitting(size_at, 0, len(sizes) - 1, max_bytes, growth, start)
    assert found == (max(fitting) if fitting else None)
    assert len(asked) == len(set(asked))


def test_quality_search_takes_few_probes_on_geometric_sizes() -> None:
    sizes = [round(120 * 1.075**q) for q in range(41)]  # like the detail layer's 41 qualities
    for max_bytes in (130, 256, 700, 1500, 2400):
        size_at, asked = _probed(sizes)
        found = highest_fitting(size_at, 0, 40, max_bytes, 1.07)
        assert found == max(q for q, size in enumerate(sizes) if size <= max_bytes)
        assert len(asked) <= 4, (max_bytes, asked)
        size_at, asked = _probed(sizes)  # started at the answer (the last face's, say): two probes
        assert highest_fitting(size_at, 0, 40, max_bytes, 1.07, start=found) == found
        assert len(asked) <= 2, (max_bytes, asked)


def test_estimate_is_close_to_the_real_size(models) -> None:
    x = generated_faces(1, seed=4)[0]
    result = compress(models["vae"], x, 512, q=0)
    assert abs(len(result.data) - result.estimated_bits / 8) <= max(4, 0.05 * len(result.data))


def _bad_inputs(valid: bytes) -> dict[str, bytes]:
    flipped = bytearray(valid)
    flipped[len(valid) // 2] ^= 0x10
    return {
        "empty": b"",
        "truncated": valid[:-3],
        "header only": valid[:5],
        "wrong magic": b"XX" + valid[2:],
        "unknown version": valid[:2] + bytes([0xF0 | (valid[2] & 0x0F)]) + valid[3:],
        "flipped bit": bytes(flipped),
        "huge": valid + bytes(MAX_FILE_BYTES),
    }


def test_bad_files_raise_typed_errors(models, valid_file: bytes) -> None:
    messages = {}
    for name, data in _bad_inputs(valid_file).items():
        with pytest.raises(CodecError) as err:
            decompress(data, models)
        messages[name] = str(err.value)
    assert "empty" in messages["empty"]
    assert "magic" in messages["wrong magic"]
    assert "version 15" in messages["unknown version"]
    assert "checksum" in messages["flipped bit"] and "checksum" in messages["truncated"]
    assert "at most" in messages["huge"]


def test_file_from_other_weights_is_rejected(models, valid_file: bytes) -> None:
    from binascii import crc_hqx

    body = valid_file[:3] + bytes([valid_file[3] ^ 0xFF]) + valid_file[4:-2]
    forged = body + struct.pack(">H", crc_hqx(body, 0))
    with pytest.raises(CodecError, match="other weights"):
        decompress(forged, models)


@settings(
    max_examples=200, derandomize=True, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_fuzzed_files_never_crash_hang_or_decode_to_garbage(models, valid_file: bytes, data) -> None:
    mutated = bytearray(valid_file)
    for _ in range(data.draw(st.integers(1, 4))):
        action = data.draw(st.sampled_from(["flip", "set", "cut", "insert"]))
        pos = data.draw(st.integers(0, max(0, len(mutated) - 1)))
        if action == "flip" and mutated:
            mutated[pos] ^= 1 << data.draw(st.integers(0, 7))
        elif action == "set" and mutated:
            mutated[pos] = data.draw(st.integers(0, 255))
        elif action == "cut":
            del mutated[pos:]
        else:
            mutated[pos:pos] = data.draw(st.binary(min_size=1, max_size=64))
    if bytes(mutated) == valid_file:
        return
    with pytest.raises(CodecError):
        decompress(bytes(mutated), models)


def test_cli_round_trip_and_error_exit(tmp_path: Path, tiny_weights: Path, astronaut: Image.Image, capsys) -> None:
    astronaut.save(tmp_path / "astronaut.png")
    to_pil(generated_faces(1)[0]).save(tmp_path / "crop.png")
    weights = ["--weights", str(tiny_weights)]
    assert (
        main(
            [
                "compress",
                str(tmp_path / "astronaut.png"),
                str(tmp_path / "crop.png"),
                "--model",
                "vae",
                "--latent",
                "128",
                "--out",
                str(tmp_path / "fcz"),
                *weights,
            ]
        )
        == 0
    )
    assert "bytes" in capsys.readouterr().out and (tmp_path / "fcz" / "astronaut.fcz").exists()
    assert (
        main(
            [
                "decompress",
                *map(str, sorted((tmp_path / "fcz").glob("*.fcz"))),
                "--out",
                str(tmp_path / "png"),
                *weights,
            ]
        )
        == 0
    )
    assert Image.open(tmp_path / "png" / "astronaut.png").size == (128, 128)

    (tmp_path / "bad.fcz").write_bytes(b"FZ\x10garbage")
    capsys.readouterr()
    assert main(["decompress", str(tmp_path / "bad.fcz"), "--out", str(tmp_path / "png"), *weights]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "bad.fcz" in err and "Traceback" not in err


def test_classic_codecs_fit_the_budget_or_say_they_cannot(astronaut: Image.Image) -> None:
    crop = astronaut.resize((128, 128))
    assert CLASSIC_FORMATS == ("JPEG", "WEBP", "AVIF", "HEIF", "JXL")
    for fmt in CLASSIC_FORMATS:
        low, high = quality_range(fmt)
        tight = classic_within(crop, fmt, 40)  # below the lowest quality: the smallest file, marked
        assert not tight.fits and tight.quality == low and len(tight.data) > 40
        assert tight.data == encode_classic(crop, fmt, low)
        found = classic_within(crop, fmt, 3000)
        assert found.fits and len(found.data) <= 3000 and found.image.size == (128, 128)
        if found.quality < high:
            assert len(encode_classic(crop, fmt, found.quality + 1)) > 3000


def test_evaluation_counts_a_classic_codec_only_where_it_fits(astronaut: Image.Image) -> None:
    from facecomp.measure.evaluate import _classic_at

    face = to_tensor(astronaut.resize((128, 128)))
    out = _classic_at(torch.stack([face, face]), [40, 3000])
    for fmt in CLASSIC_FORMATS:
        assert out[fmt]["failed"] == 1 and out[fmt]["fitted"] == 1 and out[fmt]["bytes"] <= 3000


def test_refitted_directions_keep_fcz_files_decodable(tiny_weights: Path, tmp_path: Path) -> None:
    """Refitting only the named directions rewrites the weights file (a new SHA-256); the card's
    codec_sha256 keeps naming the weights whose .fcz files it still decodes, as fit-latents
    --directions-only writes it. Without it the same file is refused as other weights."""
    import json
    import shutil

    from facecomp.latent.attributes import LabelDirection
    from facecomp.latent.statistics import set_directions
    from facecomp.weights import CODEC_SHA_FIELD, save_model

    folder = tmp_path / "weights"
    shutil.copytree(tiny_weights, folder)
    x = generated_faces(1, seed=3)[0]
    before = {kind: load_model(kind, folder)[0] for kind in ("ae", "vae")}
    data = compress(before["vae"], x, 64).data
    vae, card = load_model("vae", folder)
    vae = vae.network
    set_directions(vae, [LabelDirection("Smiling", torch.randn(vae.cfg.max_latent), 0.0, 0.9)])
    save_model(vae, folder / "vae.safetensors", {**card, CODEC_SHA_FIELD: card["sha256"]})
    after = {kind: load_model(kind, folder)[0] for kind in ("ae", "vae")}
    assert json.loads((folder / "vae.json").read_text())["sha256"] != card["sha256"]
    assert torch.equal(decompress(data, after), decompress(data, before))
    assert compress(after["vae"], x, 64).data == data  # new files carry the same name
    card = json.loads((folder / "vae.json").read_text())
    del card[CODEC_SHA_FIELD]
    (folder / "vae.json").write_text(json.dumps(card))
    with pytest.raises(CodecError, match="other weights"):
        decompress(data, {kind: load_model(kind, folder)[0] for kind in ("ae", "vae")})
