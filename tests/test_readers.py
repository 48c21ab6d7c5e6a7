"""Every kind of input file: read correctly, or refused with a specific reason."""

import io
import os
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from pneumocam.data import UnreadableImage, read_grayscale, read_resized


def gradient(h=40, w=50):
    return (np.arange(h * w).reshape(h, w) % 251).astype(np.uint8)


def save(path, image, **kwargs):
    image.save(path, **kwargs)
    return path


def test_plain_grayscale_jpeg_and_png_round_trip(tmp_path):
    g = gradient()
    assert np.array_equal(read_grayscale(save(tmp_path / "a.png", Image.fromarray(g))), g)
    jpeg = read_grayscale(save(tmp_path / "a.jpeg", Image.fromarray(g), quality=95))
    assert jpeg.shape == g.shape and np.abs(jpeg.astype(int) - g).mean() < 3


def test_zero_byte_file_is_skipped(tmp_path):
    (tmp_path / "x.jpeg").write_bytes(b"")
    with pytest.raises(UnreadableImage, match="empty file"):
        read_grayscale(tmp_path / "x.jpeg")


def test_truncated_jpeg_is_skipped(tmp_path):
    buf = io.BytesIO()
    Image.fromarray(gradient(200, 200)).save(buf, format="JPEG")
    (tmp_path / "t.jpeg").write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    with pytest.raises(UnreadableImage, match="not a readable image"):
        read_grayscale(tmp_path / "t.jpeg")


def test_text_named_jpeg_is_skipped(tmp_path):
    (tmp_path / "notes.jpeg").write_text("<html>this is not an image</html>")
    with pytest.raises(UnreadableImage, match="not a readable image"):
        read_grayscale(tmp_path / "notes.jpeg")


def test_png_with_jpeg_extension_reads_by_content(tmp_path):
    g = gradient()
    path = tmp_path / "wrong.jpeg"
    Image.fromarray(g).save(path, format="PNG")
    assert np.array_equal(read_grayscale(path), g)


def test_16_bit_png_uses_its_full_range(tmp_path):
    values = np.linspace(1000, 3000, 40 * 50).reshape(40, 50).astype(np.uint16)
    path = save(tmp_path / "deep.png", Image.fromarray(values))
    assert Image.open(path).mode.startswith("I")
    gray = read_grayscale(path)
    assert gray.min() == 0 and gray.max() == 255
    assert np.all(np.diff(gray.ravel().astype(int)) >= 0)  # monotonic mapping


def test_rgba_composites_on_black(tmp_path):
    rgba = np.zeros((40, 50, 4), dtype=np.uint8)
    rgba[..., :3] = 200
    rgba[:, :25, 3] = 255  # left half opaque, right half transparent
    gray = read_grayscale(save(tmp_path / "a.png", Image.fromarray(rgba, "RGBA")))
    assert gray[:, :25].mean() == pytest.approx(200, abs=1) and gray[:, 25:].max() == 0


def test_rgba_on_two_planes_equals_the_composite_over_black(tmp_path):
    """The reader's grey x alpha equals Pillow's alpha_composite over opaque black, then grey, within its two
    roundings (grey, then the product; the composite rounds each colour, then the grey)."""
    rgba = np.random.default_rng(0).integers(0, 256, (64, 48, 4), dtype=np.uint8)
    image = Image.fromarray(rgba, "RGBA")
    background = Image.new("RGBA", image.size, (0, 0, 0, 255))
    reference = np.asarray(Image.alpha_composite(background, image).convert("L"), dtype=int)
    gray = read_grayscale(save(tmp_path / "r.png", image)).astype(int)
    assert np.abs(gray - reference).max() <= 2 and np.abs(gray - reference).mean() < 0.75


def test_cmyk_jpeg_reads(tmp_path):
    path = save(tmp_path / "c.jpeg", Image.fromarray(gradient()).convert("CMYK"))
    assert Image.open(path).mode == "CMYK"
    gray = read_grayscale(path)
    assert gray.shape == (40, 50) and np.corrcoef(gray.ravel(), gradient().ravel())[0, 1] > 0.9


def test_palette_image_reads(tmp_path):
    path = save(tmp_path / "p.png", Image.fromarray(gradient()).convert("P"))
    assert Image.open(path).mode == "P"
    assert np.corrcoef(read_grayscale(path).ravel(), gradient().ravel())[0, 1] > 0.99


def test_exif_rotation_is_applied(tmp_path):
    g = gradient(40, 60)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    path = save(tmp_path / "r.jpeg", Image.fromarray(g), exif=exif, quality=95)
    read = read_grayscale(path)
    assert read.shape == (60, 40)
    # orientation 6 shows the stored image turned 90 degrees clockwise: np.rot90 with k=-1 (JPEG loses a little)
    assert np.abs(read.astype(int) - np.rot90(g, k=-1).astype(int)).mean() < 3
    assert np.abs(read.astype(int) - np.rot90(g, k=1).astype(int)).mean() > 20  # the other way would not pass


def test_one_pixel_image_is_skipped_as_too_small(tmp_path):
    path = save(tmp_path / "dot.png", Image.new("L", (1, 1), 128))
    with pytest.raises(UnreadableImage, match="too small"):
        read_grayscale(path)


def test_long_thin_image_is_squashed_to_the_model_size(tmp_path):
    path = save(tmp_path / "strip.png", Image.new("L", (10000, 100), 90))
    out = read_resized(path, 64)
    assert out.shape == (64, 64) and out.mean() == pytest.approx(90, abs=1)


def _png_claiming_size(width, height):
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 10)) + chunk(b"IEND", b"")
    )


def test_decompression_bomb_header_is_refused_and_guard_stays_on(tmp_path):
    assert Image.MAX_IMAGE_PIXELS is not None
    path = tmp_path / "bomb.png"
    path.write_bytes(_png_claiming_size(60000, 60000))
    with pytest.raises(UnreadableImage, match="decompression-bomb"):
        read_grayscale(path)


def test_dicom_monochrome2_reads_with_modality_lut(tmp_path, write_dicom):
    pixels = np.tile(np.arange(0, 4000, 100, dtype=np.uint16), (30, 1))
    gray = read_grayscale(write_dicom(tmp_path / "a.dcm", pixels, RescaleSlope=2, RescaleIntercept=-100))
    assert gray.shape == (30, 40) and gray[0, 0] == 0 and gray[0, -1] == 255


def test_dicom_monochrome1_is_inverted(tmp_path, write_dicom):
    pixels = np.tile(np.arange(0, 4000, 100, dtype=np.uint16), (30, 1))
    mono2 = read_grayscale(write_dicom(tmp_path / "m2.dcm", pixels))
    mono1 = read_grayscale(write_dicom(tmp_path / "m1.dcm", pixels, photometric="MONOCHROME1"))
    assert np.array_equal(mono1, 255 - mono2)


def _window(x, centre, width):
    """DICOM PS3.3 C.11.2.1.2.1 (LINEAR) onto 0..255, written out."""
    y = ((np.asarray(x, dtype=np.float64) - (centre - 0.5)) / (width - 1) + 0.5) * 255
    return np.clip(np.rint(y), 0, 255)


def test_dicom_voi_window_is_applied(tmp_path, write_dicom):
    pixels = np.tile(np.arange(0, 4000, 100, dtype=np.uint16), (30, 1))
    gray = read_grayscale(write_dicom(tmp_path / "w.dcm", pixels, WindowCenter=2000, WindowWidth=1000))
    row = gray[0]
    assert row[:10].max() == 0 and row[-10:].min() == 255  # clipped outside the window


def test_dicom_voi_window_keeps_its_contrast(tmp_path, write_dicom):
    """Pixels 1600..2400 inside a window centred at 2000, 1000 wide: about 26..230, not stretched to 0..255."""
    pixels = np.tile(np.linspace(1600, 2400, 40).round().astype(np.uint16), (30, 1))
    gray = read_grayscale(write_dicom(tmp_path / "w.dcm", pixels, WindowCenter=2000, WindowWidth=1000))
    assert np.abs(gray[0].astype(int) - _window(pixels[0], 2000, 1000)).max() <= 1
    assert 24 <= gray.min() <= 28 and 228 <= gray.max() <= 232


def test_dicom_modality_lut_comes_before_the_window(tmp_path, write_dicom):
    """A window given in rescaled units (centre 0, width 1000) on stored 100..900 with slope 2, intercept -1000:
    only with the rescale applied first do the values -800..800 fall across it; without it all would be 255."""
    pixels = np.tile(np.linspace(100, 900, 40).round().astype(np.uint16), (30, 1))
    path = write_dicom(
        tmp_path / "r.dcm", pixels, RescaleSlope=2, RescaleIntercept=-1000, WindowCenter=0, WindowWidth=1000
    )
    gray = read_grayscale(path)
    assert np.abs(gray[0].astype(int) - _window(pixels[0] * 2.0 - 1000, 0, 1000)).max() <= 1
    assert gray.min() == 0 and gray.max() == 255 and len(np.unique(gray)) > 20


def test_dicom_without_extension_is_recognised(tmp_path, write_dicom):
    pixels = np.full((30, 40), 500, dtype=np.uint16)
    pixels[:, 20:] = 1500
    path = write_dicom(tmp_path / "noext", pixels)
    assert read_grayscale(path)[0, -1] == 255


def test_dicom_without_pixel_data_is_skipped(tmp_path, write_dicom):
    path = write_dicom(tmp_path / "empty.dcm", np.zeros((30, 40), dtype=np.uint16), with_pixels=False)
    with pytest.raises(UnreadableImage, match="no pixel data"):
        read_grayscale(path)


def test_corrupt_dicom_is_skipped(tmp_path, write_dicom):
    good = write_dicom(tmp_path / "good.dcm", np.zeros((30, 40), dtype=np.uint16)).read_bytes()
    (tmp_path / "bad.dcm").write_bytes(good[:200])
    with pytest.raises(UnreadableImage):
        read_grayscale(tmp_path / "bad.dcm")


def test_unreadable_permissions_are_skipped(tmp_path, monkeypatch):
    from pneumocam.data import readers

    path = save(tmp_path / "locked.png", Image.fromarray(gradient()))
    path.chmod(0)
    if os.geteuid() == 0:  # root reads anything: make the read fail as it would for a user

        def denied(*args, **kwargs):
            raise PermissionError(13, "Permission denied", str(path))

        monkeypatch.setattr(readers, "open", denied, raising=False)
    with pytest.raises(UnreadableImage, match="permission denied"):
        read_grayscale(path)


def test_symlink_loop_is_skipped(tmp_path):
    os.symlink(tmp_path / "loop.png", tmp_path / "loop.png")
    with pytest.raises(UnreadableImage, match="link loop"):
        read_grayscale(tmp_path / "loop.png")


def test_a_header_over_the_pixel_budget_is_refused_before_decoding(tmp_path):
    """12000 x 12000 px declared in a few hundred bytes: inside Pillow's warning band (89-179 MP), so Pillow alone
    would decode it; the reader refuses it from the header."""
    path = tmp_path / "huge.png"
    path.write_bytes(_png_claiming_size(12000, 12000))
    with pytest.raises(UnreadableImage, match=r"too large: 12000x12000 = 144\.0 MP, over the limit of 64 MP"):
        read_grayscale(path)


def test_the_pixel_budget_can_be_lowered_and_a_bad_value_is_an_error(tmp_path, monkeypatch):
    from pneumocam.core.errors import PneumocamError

    path = save(tmp_path / "g.png", Image.fromarray(gradient(40, 50)))
    assert read_grayscale(path, max_pixels=2000).shape == (40, 50)  # exactly the budget passes
    with pytest.raises(UnreadableImage, match="50x40 = 0.0 MP"):
        read_grayscale(path, max_pixels=1999)
    monkeypatch.setenv("PNEUMOCAM_MAX_PIXELS", "1999")
    with pytest.raises(UnreadableImage, match="too large"):
        read_grayscale(path)
    monkeypatch.setenv("PNEUMOCAM_MAX_PIXELS", "lots")
    with pytest.raises(PneumocamError, match="PNEUMOCAM_MAX_PIXELS"):
        read_grayscale(path)


def test_a_dicom_over_the_pixel_budget_is_refused_from_rows_columns_and_frames(tmp_path, write_dicom):
    pixels = np.tile(np.arange(40, dtype=np.uint16) * 50, (30, 1))
    path = write_dicom(tmp_path / "a.dcm", pixels)
    assert read_grayscale(path, max_pixels=1200).shape == (30, 40)
    with pytest.raises(UnreadableImage, match="40x30 = 0.0 MP"):
        read_grayscale(path, max_pixels=1199)
    frames = write_dicom(tmp_path / "f.dcm", np.concatenate([pixels, pixels]), NumberOfFrames=2, Rows=30)
    with pytest.raises(UnreadableImage, match="40x30x2 frames"):
        read_grayscale(frames, max_pixels=2000)


def test_display_keeps_a_dicoms_full_range_and_offers_its_own_window(tmp_path, write_dicom):
    """Values 1000..3000 spread over 0..255 (scale 255 / 2000); the window centre 2000, width 1000 becomes centre
    (2000 - 1000) * 255 / 2000 = 127.5 and width 1000 * 255 / 2000 = 127.5 (hand numbers); only the first of
    several windows counts."""
    from pneumocam.data.readers import read_display

    pixels = np.tile(np.linspace(1000, 3000, 41).round().astype(np.uint16), (20, 1))
    path = write_dicom(tmp_path / "w.dcm", pixels, WindowCenter=[2000, 1500], WindowWidth=[1000, 400])
    gray, window = read_display(path, max_side=1024)
    assert window == {"centre": pytest.approx(127.5), "width": pytest.approx(127.5), "source": "the DICOM's own window"}
    assert gray.shape == (20, 41) and gray[0, 0] == 0 and gray[0, -1] == 255 and abs(int(gray[0, 20]) - 127.5) <= 1
    # MONOCHROME1: bright is low, so the picture and the centre turn over: 1500 -> 255 - 63.75 = 191.25
    one = write_dicom(tmp_path / "m1.dcm", pixels, photometric="MONOCHROME1", WindowCenter=1500, WindowWidth=1000)
    gray1, window1 = read_display(one, max_side=1024)
    assert window1["centre"] == pytest.approx(191.25) and gray1[0, 0] == 255 and gray1[0, -1] == 0


def test_display_of_a_film_without_a_window_is_the_read_film_under_the_identity_window(tmp_path, write_dicom):
    """No window: what read_grayscale gives, centre 127.5 / width 255; a 3000 x 1500 PNG comes at 1024 x 512."""
    from pneumocam.data.readers import read_display

    pixels = np.tile(np.arange(0, 4000, 100, dtype=np.uint16), (30, 1))
    plain = write_dicom(tmp_path / "plain.dcm", pixels)
    gray, window = read_display(plain, max_side=1024)
    assert np.array_equal(gray, read_grayscale(plain)) and window == {"centre": 127.5, "width": 255.0, "source": "none"}
    wide = tmp_path / "wide.png"
    Image.fromarray(np.tile(np.linspace(0, 255, 3000).astype(np.uint8), (1500, 1))).save(wide)
    small, _ = read_display(wide, max_side=1024)
    assert small.shape == (512, 1024)


def test_a_colour_film_counts_each_channel_against_the_budget(tmp_path):
    """An RGBA film decodes to four planes: 40 x 50 x 4 = 8,000 values against the budget (hand count)."""
    path = save(tmp_path / "c.png", Image.new("RGBA", (50, 40), (90, 90, 90, 255)))
    assert read_grayscale(path, max_pixels=8000).shape == (40, 50)
    with pytest.raises(UnreadableImage, match="50x40 x4 channels"):
        read_grayscale(path, max_pixels=7999)
    grey = save(tmp_path / "g.png", Image.new("L", (50, 40), 90))
    assert read_grayscale(grey, max_pixels=2000).shape == (40, 50)  # one plane: 2,000
