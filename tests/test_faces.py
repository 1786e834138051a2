"""Photo loading and the canonical crop, on real faces shipped by scikit-image and matplotlib."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from facecomp.__main__ import main
from facecomp.faces import (
    CROP_SIZE,
    FaceBox,
    ImageLoadError,
    NoFaceFound,
    canonical_crop,
    centre_crop,
    crop_face,
    detect_faces,
    load_image,
)


def _png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def test_astronaut_face_is_found_where_it_is(astronaut: Image.Image) -> None:
    boxes = detect_faces(astronaut)
    assert boxes, "no face found in scikit-image's astronaut"
    face = boxes[0]
    # Eileen Collins' face sits around x 170-270, y 60-180 of the 512x512 photo.
    assert 170 < face.x + face.w / 2 < 270
    assert 60 < face.y + face.h / 2 < 180
    assert boxes == sorted(boxes, key=lambda b: b.area, reverse=True)


def test_canonical_crop_is_128_rgb_and_centred_on_the_face(grace_hopper: Image.Image) -> None:
    crop, box = canonical_crop(grace_hopper)
    assert crop.size == (CROP_SIZE, CROP_SIZE) and crop.mode == "RGB"
    # The crop is the face: re-detecting on it finds a face filling most of it.
    again = detect_faces(crop)
    assert again and again[0].w > 0.6 * CROP_SIZE


def _coordinate_photo(width: int, height: int) -> Image.Image:
    """A photo whose red channel is each pixel's x and green its y: a crop says where it came from."""
    yy, xx = np.mgrid[0:height, 0:width]
    return Image.fromarray(np.stack([xx, yy, np.full_like(xx, 128)], axis=-1).astype(np.uint8))


@pytest.mark.parametrize(
    ("photo", "box", "corner"),
    [
        # (photo width, height), face box, top-left corner of the 90 x 90 square it must be cut from
        ((240, 200), FaceBox(60, 40, 100, 110), (65, 55)),  # inside: 0.9 w, centred 0.05 w below the box centre
        ((240, 200), FaceBox(-20, 30, 100, 100), (0, 40)),  # face cut by the left edge: slid inside, not padded
        ((240, 200), FaceBox(180, 130, 100, 100), (150, 110)),  # past the bottom-right corner: slid back in
        ((60, 50), FaceBox(5, 0, 100, 60), (10, -10)),  # larger than the photo: edge pixels repeated around it
    ],
)
def test_crop_frames_the_face_by_the_canonical_rule(photo, box, corner) -> None:
    """Crop pixel n (along x or y) shows the source point corner + (n + 0.5) * side / 128: the framing
    the models were trained on (0.9 x the box width, 5% of it below the box centre), slid inside the
    photo near its borders; only a square larger than the photo repeats its edge pixels."""
    width, height = photo
    side = 0.9 * box.w
    crop = np.asarray(crop_face(_coordinate_photo(width, height), box)).astype(float)
    assert crop.shape == (CROP_SIZE, CROP_SIZE, 3)
    steps = (np.arange(CROP_SIZE) + 0.5) * side / CROP_SIZE - 0.5  # pixel i's centre is at i + 0.5
    xs, ys = np.clip(corner[0] + steps, 0, width - 1), np.clip(corner[1] + steps, 0, height - 1)
    assert np.abs(crop[..., 0] - xs[None, :]).max() < 1.0  # every column from the expected x
    assert np.abs(crop[..., 1] - ys[:, None]).max() < 1.0  # every row from the expected y


def test_no_face_is_a_typed_signal_with_a_centred_fallback() -> None:
    blank = Image.new("RGB", (300, 200), (120, 160, 200))
    with pytest.raises(NoFaceFound):
        canonical_crop(blank)
    assert centre_crop(blank).size == (CROP_SIZE, CROP_SIZE)


def test_load_image_applies_exif_orientation(astronaut: Image.Image) -> None:
    wide = astronaut.resize((200, 100))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    buf = io.BytesIO()
    wide.save(buf, format="JPEG", exif=exif)
    loaded = load_image(buf.getvalue())
    assert loaded.size == (100, 200) and loaded.mode == "RGB"


def test_load_image_flattens_alpha_on_white() -> None:
    rgba = Image.new("RGBA", (10, 10), (0, 0, 0, 0))
    loaded = load_image(_png(rgba))
    assert loaded.mode == "RGB" and loaded.getpixel((5, 5)) == (255, 255, 255)


def test_load_image_converts_any_mode() -> None:
    for mode in ("L", "P", "CMYK", "I;16"):
        img = Image.new(mode, (8, 8))
        buf = io.BytesIO()
        img.save(buf, format="TIFF")
        assert load_image(buf.getvalue()).mode == "RGB"


def test_load_image_converts_colour_profiles_and_drops_them(astronaut: Image.Image) -> None:
    """An embedded profile must not ride into the classic codecs' files (3 KB against a 2 KB budget)."""
    from PIL import ImageCms

    from facecomp.codec.classic import encode_classic

    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    buf = io.BytesIO()
    astronaut.save(buf, "PNG", icc_profile=srgb)
    loaded = load_image(buf.getvalue())
    assert loaded.info == {} and np.array_equal(np.asarray(loaded), np.asarray(astronaut))  # sRGB to sRGB
    assert len(encode_classic(loaded.resize((128, 128)), "AVIF", 0)) < 1000
    cmyk = io.BytesIO()  # a print CMYK JPEG opens as RGB
    astronaut.convert("CMYK").save(cmyk, "JPEG")
    assert load_image(cmyk.getvalue()).mode == "RGB"


def test_load_image_rejects_garbage_and_bombs() -> None:
    with pytest.raises(ImageLoadError):
        load_image(b"this is not an image")
    with pytest.raises(ImageLoadError):
        load_image(b"")
    big = _png(Image.new("L", (3000, 3000)))
    with pytest.raises(ImageLoadError, match="limit"):
        load_image(big, max_pixels=1_000_000)


def test_load_image_reports_a_path_it_cannot_read(tmp_path) -> None:
    """The crop command and data preparation skip what raises ImageLoadError: a missing file or a
    folder must raise it too, not OSError."""
    for path in (tmp_path / "missing.jpg", tmp_path):
        with pytest.raises(ImageLoadError, match="cannot read"):
            load_image(path)


def test_crop_cli_writes_pngs_and_warns_without_a_face(tmp_path, astronaut, capsys) -> None:
    src = tmp_path / "in"
    src.mkdir()
    astronaut.save(src / "astronaut.jpg")
    Image.fromarray(np.full((90, 120, 3), 200, np.uint8)).save(src / "wall.png")
    assert main(["crop", str(src), "--out", str(tmp_path / "out")]) == 0
    assert Image.open(tmp_path / "out" / "astronaut.png").size == (CROP_SIZE, CROP_SIZE)
    assert Image.open(tmp_path / "out" / "wall.png").size == (CROP_SIZE, CROP_SIZE)
    assert "wall.png: no face found" in capsys.readouterr().err


@pytest.mark.slow
def test_detection_is_thread_safe(astronaut, grace_hopper) -> None:
    """The app detects faces for many users at once; a shared OpenCV cascade gave wrong boxes (and crashed)."""
    from concurrent.futures import ThreadPoolExecutor

    from facecomp.faces import detect_faces

    photos = [astronaut, grace_hopper]
    expected = [detect_faces(p) for p in photos]
    with ThreadPoolExecutor(4) as pool:
        found = list(pool.map(lambda i: detect_faces(photos[i % 2]), range(48)))
    assert all(boxes == expected[i % 2] for i, boxes in enumerate(found))


@pytest.mark.parametrize("fmt", ["HEIF", "JXL", "AVIF"])
def test_phone_and_new_formats_open(astronaut: Image.Image, fmt: str) -> None:
    """An iPhone's HEIC, a JPEG XL or an AVIF upload opens like any photo, pixels intact."""
    small = astronaut.resize((128, 128))
    buf = io.BytesIO()
    small.save(buf, format=fmt, quality=90)
    opened = load_image(buf.getvalue())
    assert opened.size == (128, 128) and opened.mode == "RGB"
    error = np.abs(np.asarray(opened, dtype=float) - np.asarray(small, dtype=float)).mean()
    assert error < 6  # lossy, but the same picture
