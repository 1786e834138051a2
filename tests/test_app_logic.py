"""The app's computations without Streamlit: facecomp.comparison, latent.explorer, visual and measure.charts."""

from __future__ import annotations

import io
import pickle

import numpy as np
import pytest
import torch
from PIL import Image

from facecomp import comparison
from facecomp.app import first_page
from facecomp.codec import fcz
from facecomp.faces import FaceBox, ImageLoadError
from facecomp.latent import explorer
from facecomp.measure import charts, metrics, tables
from facecomp.result import Result
from facecomp.visual import display_png, draw_boxes, error_map, fit_width, png_bytes, to_pil, to_tensor, upscale
from facecomp.weights import load_model
from tests.appdata import ASTRONAUT, fake_evaluation, make_weights_dir


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict:
    folder = make_weights_dir(tmp_path_factory.mktemp("logic_weights"))
    return {kind: load_model(kind, folder)[0] for kind in ("ae", "vae")}


@pytest.fixture(scope="module")
def tiny_models(tiny_weights) -> dict:
    """Small untrained models (tests/conftest.py): the codec searches budgets quickly with them."""
    return {kind: load_model(kind, tiny_weights)[0] for kind in ("ae", "vae")}


@pytest.fixture(scope="module")
def crop() -> Image.Image:
    photo = comparison.open_photo(comparison.builtin_photo_bytes(ASTRONAUT))
    assert len(photo.boxes) == 1
    return comparison.choose_crop(photo, 0)


def test_builtin_photos_have_faces() -> None:
    for name in comparison.BUILTIN_PHOTOS:
        photo = comparison.open_photo(comparison.builtin_photo_bytes(name))
        assert photo.boxes, name
        assert comparison.choose_crop(photo, 0).size == (128, 128)
        assert comparison.choose_crop(photo, None).size == (128, 128)  # centred crop


def test_unreadable_bytes_raise_typed_error() -> None:
    with pytest.raises(ImageLoadError):
        comparison.open_photo(b"\x89PNG but not really")


def test_kept_photo_is_small_and_crops_like_the_full_photo() -> None:
    """The app keeps a preview and the crops of a large photo, never the photo itself; the
    crops are those of the full-size photo, and the boxes land where the faces are."""
    face = Image.open(io.BytesIO(comparison.builtin_photo_bytes(ASTRONAUT))).convert("RGB").resize((2400, 2400))
    big = Image.new("RGB", (4000, 3000), (30, 90, 60))
    big.paste(face, (1500, 300))
    data = png_bytes(big)
    photo, kept = comparison.open_photo(data), comparison.keep_photo(data)
    assert photo.boxes and kept.boxes == photo.boxes
    assert kept.crop_png(0) == png_bytes(comparison.choose_crop(photo, 0))
    with pytest.raises(ValueError, match="pick one"):
        kept.crop_png(None)  # a photo with faces keeps no centred crop
    assert kept.preview.width == comparison.PREVIEW_WIDTH and kept.width == 4000
    assert len(pickle.dumps(kept)) < 4_000_000  # the photo decoded is 36 MB
    box = photo.boxes[0]
    shown = draw_boxes(kept.preview, kept.boxes, selected=0, width=800, source_width=kept.width)
    on_box = shown.getpixel((round(box.x * 0.2), round((box.y + box.h / 2) * 0.2)))
    beside = shown.getpixel((round(box.x * 0.2) - 8, round((box.y + box.h / 2) * 0.2)))
    assert on_box != beside  # the box's outline is drawn at the face, in the preview's pixels

    no_face = png_bytes(Image.new("RGB", (300, 200), "white"))
    blank = comparison.keep_photo(no_face)
    assert not blank.boxes and blank.preview.size == (300, 200)
    assert blank.crop_png(None) == png_bytes(comparison.choose_crop(comparison.open_photo(no_face), None))


def test_compare_returns_every_codec(tiny_models: dict, crop: Image.Image) -> None:
    results = comparison.compare(crop, tiny_models, 256)
    assert [r.name for r in results] == ["Original", "AE", "VAE", "JPEG", "WebP", "AVIF", "HEIC", "JPEG XL"]
    for r in results[1:3]:
        assert r.image.size == (128, 128) and r.file_name.endswith(".fcz")
        assert r.bpp == pytest.approx(8 * r.n_bytes / 128**2)
        assert 0 < r.psnr < 60 and -1 <= r.ssim <= 1
        assert r.note.startswith("latent ") and r.n_bytes <= 256
    for r in results[3:]:
        assert r.image is not None and r.n_bytes == len(r.data)  # every codec shows a picture
        if r.over_budget:  # even the lowest quality is over the budget: the note says by how much
            needed = r.extra["needed_bytes"]
            assert needed == r.n_bytes > 256 and f"needs {needed:,} bytes" in r.note and "× the budget" in r.note
        else:
            assert r.n_bytes <= 256 and r.note.startswith("quality")
    assert results[0].identity is None  # the original is the reference
    if any(r.identity is not None for r in results):  # dlib and its model files are installed
        assert all(r.identity is not None and r.identity >= 0 for r in results[1:])


def test_compare_classic_over_budget_still_shows_its_smallest_file(tiny_models: dict, crop: Image.Image) -> None:
    (_, _, _, jpeg) = comparison.compare(crop, tiny_models, 32, classic=("JPEG",), measure=False)
    assert jpeg.name == "JPEG" and jpeg.over_budget
    assert jpeg.image.size == (128, 128) and jpeg.psnr is not None and jpeg.ssim is not None
    assert jpeg.n_bytes == len(jpeg.data) == jpeg.extra["needed_bytes"] > 32
    assert jpeg.note == f"needs {jpeg.n_bytes:,} bytes, {jpeg.n_bytes / 32:.1f}× the budget"
    assert jpeg.file_name.endswith(".jpg")


def test_compare_large_budget_fits_every_file(tiny_models: dict, crop: Image.Image) -> None:
    results = comparison.compare(crop, tiny_models, 2048, measure=False)
    ae = results[1]
    assert ae.name == "AE" and len(ae.data) == ae.n_bytes <= 2048 and not ae.over_budget
    # The picture shown is what the file decodes to.
    assert to_tensor(ae.image).allclose(fcz.decompress(ae.data, tiny_models), atol=1 / 255)
    for r in results[1:]:
        assert not r.over_budget and r.n_bytes <= 2048, r.name


def test_compare_fixed_latent_size(tiny_models: dict, crop: Image.Image) -> None:
    results = comparison.compare(crop, tiny_models, 2048, classic=(), latent=16, measure=False)
    assert [r.note for r in results[1:]] == ["latent 16", "latent 16"]
    assert all(r.n_bytes <= 2048 for r in results[1:])


def test_compare_without_dlib_has_no_identity(
    tiny_models: dict, crop: Image.Image, monkeypatch: pytest.MonkeyPatch
) -> None:
    def missing(*args: object, **kwargs: object) -> None:
        raise ImportError("no dlib here")

    monkeypatch.setattr(comparison.identity, "descriptors", missing)  # what it raises without dlib
    results = comparison.compare(crop, tiny_models, 64, classic=("WebP",))
    assert all(r.identity is None and r.identity_text == "" for r in results)


def test_identity_text() -> None:
    assert Result("AE", None, identity=0.41).identity_text == "same person (0.41)"
    assert Result("AE", None, identity=0.67).identity_text == "another person? (0.67)"
    assert Result("AE", None).identity_text == ""


def test_upscale_is_nearest_and_exact() -> None:
    img = Image.new("RGB", (128, 128), "black")
    img.putpixel((0, 0), (255, 0, 0))
    big = upscale(img, 512)
    assert big.size == (512, 512)
    assert big.getpixel((3, 3)) == (255, 0, 0) and big.getpixel((4, 4)) == (0, 0, 0)


def test_tensor_round_trip(crop: Image.Image) -> None:
    assert np.array_equal(np.asarray(to_pil(to_tensor(crop))), np.asarray(crop))


def test_error_map_is_hot_exactly_where_the_pictures_differ(crop: Image.Image) -> None:
    """A zero error is inferno's darkest colour, `max_error` (mean over RGB) and above its brightest,
    in between on the scale; the map's pixels are the pictures' pixels (not transposed or shifted)."""
    from matplotlib import colormaps

    def colour(value: float) -> np.ndarray:
        return np.round(np.asarray(colormaps["inferno"](value)[:3]) * 255)

    original = np.asarray(crop).astype(int)
    step = np.where(original > 127, -32, 32)  # towards mid-grey: never clipped
    recon = original.copy()
    recon[10:30, 70:120, 0] += 3 * step[10:30, 70:120, 0]  # rows 10-29, columns 70-119: red off by 96 levels
    recon[90:100, 5:15] += 2 * step[90:100, 5:15]  # bottom left: every channel off by 64 levels
    heat = np.asarray(error_map(crop, Image.fromarray(recon.astype(np.uint8)), max_error=0.25)).astype(int)
    assert heat.shape == (128, 128, 3)
    half, full = colour(32 / 255 / 0.25), colour(1.0)  # 96/3 levels: 0.50; 64 levels: just over 0.25, 1.00
    assert np.abs(heat[10:30, 70:120] - half).max() <= 1
    assert np.abs(heat[90:100, 5:15] - full).max() <= 1
    cold = np.ones((128, 128), bool)
    cold[10:30, 70:120] = cold[90:100, 5:15] = False
    assert (heat[cold] == colour(0.0)).all()
    assert (np.asarray(error_map(crop, crop)) == colour(0.0)).all()  # no error anywhere: all cold
    # A recon of another size is compared after resizing to the original's.
    small = Image.fromarray(recon.astype(np.uint8)).resize((64, 64), Image.Resampling.NEAREST)
    assert error_map(crop, small).size == crop.size


def test_draw_boxes_fits_the_width() -> None:
    photo = Image.new("RGB", (1200, 800), "white")
    shown = draw_boxes(photo, [FaceBox(100, 100, 200, 200), FaceBox(600, 10, 100, 100)], selected=1, width=600)
    assert shown.size == (600, 400)
    for width in (960, 1000, 1333):  # a whole-factor reduction, then a resampling, or both
        assert fit_width(Image.new("RGB", (1920, 1080)), width).size == (min(width, 1920), round(1080 * width / 1920))


def test_draw_boxes_leaves_a_cached_preview_alone() -> None:
    """A preview no wider than the page's width is drawn on a copy: the cache keeps it without boxes."""
    preview = Image.new("RGB", (960, 540), "white")
    shown = draw_boxes(preview, [FaceBox(100, 100, 200, 200)], width=960)
    assert shown.size == preview.size and shown.getextrema() != preview.getextrema()
    assert preview.getextrema() == ((255, 255),) * 3


def test_slerp_endpoints_and_norm() -> None:
    gen = torch.Generator().manual_seed(0)
    a, b = torch.randn(512, generator=gen), torch.randn(512, generator=gen)
    assert torch.allclose(explorer.slerp(a, b, 0.0), a, atol=1e-5)
    assert torch.allclose(explorer.slerp(a, b, 1.0), b, atol=1e-5)
    mid = explorer.slerp(a, b, 0.5)
    # The spherical path keeps the norm of Gaussian codes; the straight line shrinks it.
    assert mid.norm() > ((a + b) / 2).norm() * 1.2
    assert torch.allclose(explorer.slerp(a, a, 0.3), a, atol=1e-5)


def test_directions_move_and_named(models: dict) -> None:
    vae, ae = models["vae"].network, models["ae"].network
    dirs = explorer.directions(vae, 8)
    assert len(dirs) == 8 and not dirs[0].note  # fitted by the test weights
    assert explorer.directions(ae, 4)[0].note  # unfitted: latent axes
    # Only directions that pass the accuracy bar become sliders; the edit report decides the defaults.
    named = explorer.named_directions(vae)
    assert [d.name for d in named] == ["Smiling", "Age"]
    edits = {"Smiling": {"flip_rate": 0.5, "identity_kept": 0.9, "meets_edit_targets": False}}
    assert "flips it in 50%" in explorer.named_directions(vae, edits)[0].note
    shown, more = explorer.editor_directions(vae, edits)  # Smiling's edit misses: under "more"
    assert [d.name for d in shown] == ["Age"] and [d.name for d in more[:2]] == ["Smiling", "Main direction 1"]
    shown, more = explorer.editor_directions(vae)  # nothing measured: every named direction shown
    assert [d.name for d in shown] == ["Smiling", "Age"] and more[0].name == "Main direction 1"
    assert explorer.named_directions(ae) == []
    base = explorer.random_code(vae, 3, "prior")
    moved = explorer.move(base, dirs, [1.0] + [0.0] * 7)
    assert torch.allclose(moved - base, dirs[0].std * dirs[0].vector, atol=1e-5)
    assert torch.equal(explorer.move(base, dirs, [0.0] * 8), base)


def test_morph_gif_and_samples(models: dict, crop: Image.Image) -> None:
    vae = models["vae"].network
    frames = explorer.morph_frames(vae, explorer.encode(vae, crop), explorer.random_code(vae, 1), 6)
    assert len(frames) == 6 and frames[0].size == (128, 128)
    gif = Image.open(io.BytesIO(explorer.gif_bytes(frames, size=256)))
    assert gif.format == "GIF" and gif.n_frames == 10 and gif.size == (256, 256)  # there and back
    sheet = explorer.sample_grid(vae, 6, seed=1, columns=3)
    assert sheet.size == (3 * 130 + 2, 2 * 130 + 2)  # 2-pixel gaps and border
    assert explorer.sample_grid(vae, 6, seed=2, columns=3) != sheet


@pytest.mark.parametrize(("n", "columns"), [(6, 3), (7, 3), (2, 4)])  # make_grid returns one picture bare
def test_tile_lays_out_as_make_grid(n: int, columns: int) -> None:
    from torchvision.utils import make_grid

    pictures = torch.rand(n, 3, 5, 4, generator=torch.Generator().manual_seed(n))
    assert torch.equal(explorer.tile(pictures, columns), make_grid(pictures, nrow=columns, padding=2, pad_value=1.0))


def test_charts_from_evaluation() -> None:
    evaluation = fake_evaluation()
    records = evaluation["records"]
    curves = charts.budget_curves(evaluation)
    budget_lines = [t for t in curves.data if t.x and t.x[0] == 32]
    # AE, VAE, JPEG, WebP in each of the three panels; JPEG's line has no points (no file ever fits).
    assert len(budget_lines) == 4 * 3 and all(y is None for y in budget_lines[2 * 3].y)
    assert budget_lines[0].y[-1] == pytest.approx(15.0 + 12)  # AE's PSNR at 2048 bytes
    assert budget_lines[2].y[-1] == pytest.approx(100.0)  # AE's identity kept (%) at 2048 bytes
    webp = budget_lines[3 * 3]
    assert webp.marker.symbol[4] == "diamond-open" and webp.marker.symbol[5] == "diamond"  # 2 of 5 fit at 512
    assert len([t for t in curves.data if t.showlegend is not False]) == 4  # one legend entry per codec
    # The detail layers and the JPEG and WebP sweeps (AVIF, never held to a budget here, is left out).
    assert len([t for t in curves.data if t.line.dash == "dot"]) == (2 + 2) * 3
    assert tables.budget_winners(evaluation) == {64: "AE", 128: "AE", 256: "AE", 512: "AE", 1024: "WebP", 2048: "WebP"}
    table = tables.budget_table(evaluation)
    assert [r["bytes at most"] for r in table] == ["64", "128", "256", "512", "1,024", "2,048"]
    assert table[3]["WebP"] == "26.00 · 100% · 2/5" and table[0]["JPEG"] == "none fit · 0/5"
    assert tables.smallest_classic_note(evaluation) == "JPEG 980, WebP 360"
    assert tables.budget_table({"records": records}) == [] and not charts.budget_curves({}).data
    assert len(charts.quality_vs_latent(records, "ssim").data) == 4
    assert charts.histogram(records, "vae", 256, "psnr").data[0].y == (3, 10, 4)
    assert len(charts.noise_robustness(records).data) == 2
    rows = tables.summary_rows(records)
    assert len(rows) == 12 and rows[0]["JPEG failed"] == 17 and rows[0][".fcz identity kept"] == "40%"
    assert tables.bytes_table(records, (16, 512))[1]["float32 bytes"] == 2048
    assert len(tables.study_comparison(records)) == 4 and len(tables.study_comparison(None)) == 2


def test_evaluation_names_the_models_measured_with_other_weights() -> None:
    ae, vae = {"codec_sha256": "a1", "detail_sha256": "d1"}, {"codec_sha256": "v1", "detail_sha256": None}
    evaluation = {"weights": {"ae": ae, "vae": vae}}
    assert tables.unmeasured_kinds(evaluation, {"ae": ae, "vae": vae}) == []
    retrained_detail = {"ae": ae | {"detail_sha256": "d2"}, "vae": vae}
    assert tables.unmeasured_kinds(evaluation, retrained_detail) == ["ae"]
    assert tables.unmeasured_kinds({}, {"ae": ae, "vae": vae}) == ["ae", "vae"]  # an evaluation that does not say


def test_png_bytes_is_lossless(crop: Image.Image) -> None:
    for encode in (png_bytes, display_png):
        assert np.array_equal(np.asarray(Image.open(io.BytesIO(encode(crop))).convert("RGB")), np.asarray(crop))


def test_ssim_is_scikit_images(crop: Image.Image) -> None:
    from skimage.metrics import structural_similarity

    x = to_tensor(crop)
    noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(0))
    pairs = [(x, (x + 0.05 * noise).clamp(0, 1)), (x, x.flip(-1)), (x, torch.full_like(x, 0.5))]
    pairs.append((x[:, :40, :57], x[:, 3:43, 5:62]))  # not square: each axis filtered by its own size
    for a, b in pairs:
        expected = structural_similarity(
            a.permute(1, 2, 0).numpy(),
            b.permute(1, 2, 0).numpy(),
            data_range=1.0,
            channel_axis=2,
            gaussian_weights=True,
            sigma=1.5,
            use_sample_covariance=False,
        )
        assert metrics.ssim(a, b) == pytest.approx(expected, abs=1e-6)
    assert metrics.ssim(x, x) == pytest.approx(1.0)


def test_markdown_table() -> None:
    rows = [{"model": "AE", "epochs": 3, "note": "a|b"}, {"model": "VAE", "epochs": None, "note": ""}]
    assert first_page.markdown_table(rows).splitlines() == [
        "| model | epochs | note |",
        "|---|---|---|",
        "| AE | 3 | a\\|b |",
        "| VAE | – |  |",
    ]
    assert first_page.markdown_table([]) == ""


def test_compare_runs_each_classic_codec_as_alone(crop: Image.Image) -> None:
    """Codecs run on worker threads; each must get the file it gets alone (Pillow keeps save
    options on the image object, so a shared image swapped qualities between threads)."""
    from facecomp.codec.classic import classic_within
    from facecomp.spec import CLASSIC_FORMATS

    results = comparison.compare(crop, {}, 1024, measure=False)[1:]
    alone = [classic_within(crop, fmt, 1024) for fmt in CLASSIC_FORMATS]
    assert [r.n_bytes for r in results] == [len(a.data) for a in alone]
