"""Read any chest X-ray file into one 8-bit grayscale array.

Supported: JPEG, PNG, TIFF, BMP of any mode (L, RGB, RGBA, P, I;16, CMYK, EXIF-rotated)
and DICOM (Modality and VOI LUTs applied, MONOCHROME1 inverted). Pillow's
decompression-bomb guard stays on. Every failure is an `UnreadableImage` whose message is
the reason recorded in the skip list.
"""

from __future__ import annotations

import functools
import io
import os
import tarfile
import zlib
from pathlib import Path

import numpy as np
from PIL import BmpImagePlugin, Image, ImageChops, ImageOps, JpegImagePlugin, PngImagePlugin, TiffImagePlugin  # noqa: F401

from pneumocam.core.errors import PneumocamError

IMAGE_SUFFIXES = frozenset({".jpeg", ".jpg", ".png", ".tif", ".tiff", ".bmp", ".dcm", ".dicom"})
# The formats Pillow may open (their plugins imported above; JPEG's also opens the MPO JPEGs cameras write), whatever
# a file's name says. Any other plugin (GIF, WebP, TGA, EPS: which starts Ghostscript) is never reached.
PIL_FORMATS = ("PNG", "JPEG", "TIFF", "BMP")
IGNORED_NAMES = frozenset({"thumbs.db", "desktop.ini", ".ds_store"})
MIN_SIDE = 16  # smaller images carry no usable anatomy after resizing
# The largest film decoded, read from the file's header before any pixel is: a 43 cm detector at 100 um is about
# 18.5 MP, so 64 MP is beyond any real chest film while a small file declaring 12000 x 12000 px is refused.
DEFAULT_MAX_PIXELS = 64_000_000
MAX_PIXELS_ENV = "PNEUMOCAM_MAX_PIXELS"


class UnreadableImage(Exception):
    """The file cannot be used as an image; str(exc) is the reason for the skip list."""


def is_hidden(name: str) -> bool:
    return name.startswith(".") or name.lower() in IGNORED_NAMES


def is_image_name(name: str) -> bool:
    return Path(name).suffix.lower() in IMAGE_SUFFIXES


# A film inside a tar shard is named SHARD.tar::MEMBER, so every command reads it like a file on disk.
MEMBER_SEPARATOR = "::"


def tar_member(path: str | os.PathLike) -> tuple[str, str] | None:
    """(shard, member name) for a SHARD.tar::MEMBER path, else None."""
    text = os.fspath(path)
    shard, found, member = text.partition(MEMBER_SEPARATOR)
    return (shard, member) if found and shard.lower().endswith(".tar") else None


@functools.lru_cache(maxsize=256)
def _members(shard: str, size: int, mtime_ns: int) -> dict[str, tuple[int, int]]:
    """Where each regular member's bytes lie in the shard (one pass over its headers, remembered per version)."""
    with tarfile.open(shard, "r:") as archive:
        return {m.name: (m.offset_data, m.size) for m in archive if m.isfile()}


def shard_members(shard: str) -> dict[str, tuple[int, int]]:
    stat = os.stat(shard)
    return _members(shard, stat.st_size, stat.st_mtime_ns)


def read_bytes(path: str | os.PathLike) -> bytes:
    """The bytes of a file, or of a member of a tar shard (seeking straight to it)."""
    member = tar_member(path)
    if member is None:
        with open(path, "rb") as f:
            return f.read()
    shard, name = member
    try:
        offset, size = shard_members(shard)[name]
    except tarfile.TarError as exc:
        raise UnreadableImage(f"not a readable tar shard: {exc}") from exc
    except KeyError:
        raise UnreadableImage(f"no member {name} in {shard}") from None
    with open(shard, "rb") as f:
        f.seek(offset)
        return f.read(size)


def image_source(path: str | os.PathLike):
    """What Pillow and pydicom open: the path itself, or an in-memory copy of a shard member."""
    return io.BytesIO(read_bytes(path)) if tar_member(path) else os.fspath(path)


def file_stamp(path: str | os.PathLike) -> str:
    """Size and modification time: of the file, or of the shard plus the member's place in it."""
    member = tar_member(path)
    stat = os.stat(member[0] if member else path)
    stamp = f"{stat.st_size}\0{stat.st_mtime_ns}"
    if member:
        stamp += f"\0{shard_members(member[0]).get(member[1])}"
    return stamp


def looks_like_dicom(source) -> bool:
    if isinstance(source, io.BytesIO):
        head = source.read(132)
        source.seek(0)
    else:
        with open(source, "rb") as f:
            head = f.read(132)
    return len(head) == 132 and head[128:132] == b"DICM"


def max_pixels() -> int:
    """The pixel budget of every reader: DEFAULT_MAX_PIXELS, or PNEUMOCAM_MAX_PIXELS when set."""
    text = os.environ.get(MAX_PIXELS_ENV, "").strip()
    if not text:
        return DEFAULT_MAX_PIXELS
    if not text.isdigit() or int(text) < MIN_SIDE * MIN_SIDE:
        raise PneumocamError(
            f"{MAX_PIXELS_ENV} must be a whole number of pixels >= {MIN_SIDE * MIN_SIDE}, got '{text}'"
        )
    return int(text)


def check_pixel_budget(width: int, height: int, frames: int = 1, budget: int | None = None, channels: int = 1) -> None:
    """UnreadableImage when a header declares more pixels than the budget (checked before decoding). A colour film
    counts each channel (a 6000 x 6000 RGBA PNG weighs 144 M, as its decoded planes do in memory)."""
    budget = max_pixels() if budget is None else int(budget)
    count = int(width) * int(height) * max(1, int(frames)) * max(1, int(channels))
    if count > budget:
        shape = f"{width}x{height}" + (f"x{frames} frames" if frames > 1 else "")
        shape += f" x{channels} channels" if channels > 1 else ""
        raise UnreadableImage(
            f"image too large: {shape} = {count / 1e6:.1f} MP, over the limit of {budget / 1e6:g} MP "
            f"(--max-pixels or {MAX_PIXELS_ENV})"
        )


def decoded_channels(mode: str) -> int:
    """How many 8-bit planes a Pillow mode decodes to on the reader's way to grey (a palette is expanded to RGBA)."""
    return {"P": 4, "PA": 4, "RGBA": 4, "CMYK": 4, "RGB": 3, "YCbCr": 3, "LAB": 3, "HSV": 3, "LA": 2}.get(mode, 1)


DEFLATED_DICOM = b"1.2.840.10008.1.2.1.99"  # Deflated Explicit VR Little Endian: the whole dataset is zlib data


def check_deflated_budget(source, budget: int | None = None) -> None:
    """pydicom inflates a deflated DICOM whole before its Rows and Columns can be read, so a small file can become
    gigabytes. Inflate it here first, a megabyte at a time and keeping nothing, and refuse it once it holds more than
    a one-frame 16-bit film within the pixel budget could (plus a megabyte of other elements)."""
    opened = source if isinstance(source, io.BytesIO) else open(source, "rb")
    try:
        opened.seek(0)
        head = opened.read(144)
        if head[128:132] != b"DICM" or head[132:136] != b"\x02\x00\x00\x00" or head[136:138] != b"UL":
            return  # no file meta group length: pydicom will say what is wrong
        length = int.from_bytes(head[140:144], "little")
        if length > 1 << 20 or DEFLATED_DICOM not in opened.read(length):
            return
        cap = 2 * (max_pixels() if budget is None else int(budget)) + (1 << 20)
        inflate, total = zlib.decompressobj(-zlib.MAX_WBITS), 0
        while chunk := opened.read(1 << 16):
            while chunk:
                total += len(inflate.decompress(chunk, 1 << 20))
                chunk = inflate.unconsumed_tail
                if total > cap:
                    raise UnreadableImage(
                        f"deflated DICOM inflates past {cap / 2**20:.0f} MB, more than a film within the pixel budget "
                        f"holds (--max-pixels or {MAX_PIXELS_ENV})"
                    )
    except zlib.error as exc:
        raise UnreadableImage(f"corrupt deflated DICOM: {exc}") from exc
    finally:
        if opened is source:
            source.seek(0)
        else:
            opened.close()


def _to_uint8(array: np.ndarray, value_range: tuple[float, float] | None = None) -> np.ndarray:
    """Linearly map value_range (default: the array's own range) onto 0..255 (16-bit and float images), in float32
    and in place: one working copy of the film, never several float64 ones."""
    array = np.asarray(array)
    work = array.astype(np.float32, copy=True)
    finite = np.isfinite(work)
    if not finite.any():
        raise UnreadableImage("image holds no finite pixel values")
    all_finite = bool(finite.all())
    if value_range is not None:
        low, high = float(value_range[0]), float(value_range[1])
    else:
        low = float(work.min() if all_finite else work[finite].min())
        high = float(work.max() if all_finite else work[finite].max())
    if not all_finite:
        work[~finite] = low
    del finite
    if high <= low:
        return np.zeros(array.shape, dtype=np.uint8)
    work -= low
    work *= np.float32(255.0 / (high - low))
    np.rint(work, out=work)
    np.clip(work, 0, 255, out=work)
    return work.astype(np.uint8)


def _voi_output_range(ds) -> tuple[float, float] | None:
    """The range pydicom's apply_voi_lut maps into (PS3.3 C.11.2): a VOI LUT's 0..2^bits-1, or a window's range of
    the stored values after the modality rescale; None without a VOI transform."""
    try:
        if ds.get("VOILUTSequence"):
            return 0.0, float(2 ** int(ds.VOILUTSequence[0].LUTDescriptor[2]) - 1)
        if "WindowCenter" not in ds or "WindowWidth" not in ds:
            return None
        bits = int(ds.BitsStored)
        if ds.get("ModalityLUTSequence"):
            low, high = 0.0, float(2 ** int(ds.ModalityLUTSequence[0].LUTDescriptor[2]) - 1)
        elif int(ds.get("PixelRepresentation", 0)) == 0:
            low, high = 0.0, float(2**bits - 1)
        else:
            low, high = float(-(2 ** (bits - 1))), float(2 ** (bits - 1) - 1)
        slope, intercept = ds.get("RescaleSlope"), ds.get("RescaleIntercept")
        if slope is not None and intercept is not None:
            low, high = sorted((low * float(slope) + float(intercept), high * float(slope) + float(intercept)))
        return low, high
    except (AttributeError, IndexError, KeyError, TypeError, ValueError) as exc:
        raise UnreadableImage(f"corrupt DICOM: unreadable VOI transform ({exc})") from exc


def _read_dicom(path, budget: int | None = None) -> np.ndarray:
    import pydicom  # deferred: only DICOM files need it
    from pydicom.errors import BytesLengthException, InvalidDicomError  # deferred: only DICOM files need it
    from pydicom.pixels import apply_modality_lut, apply_voi_lut  # deferred: only DICOM files need it

    check_deflated_budget(path, budget)
    try:
        ds = pydicom.dcmread(path)
    except (InvalidDicomError, BytesLengthException, EOFError, ValueError, KeyError, TypeError) as exc:
        raise UnreadableImage(f"corrupt DICOM: {exc}") from exc
    if "PixelData" not in ds:
        raise UnreadableImage("DICOM file has no pixel data")
    try:
        rows, columns = int(ds.get("Rows", 0)), int(ds.get("Columns", 0))
        frames, samples = int(ds.get("NumberOfFrames", 1) or 1), int(ds.get("SamplesPerPixel", 1) or 1)
    except (TypeError, ValueError) as exc:
        raise UnreadableImage(f"corrupt DICOM: unreadable image size ({exc})") from exc
    check_pixel_budget(columns, rows, frames * samples, budget)
    try:
        pixels = ds.pixel_array
    except Exception as exc:  # pydicom raises many types for bad or compressed data
        raise UnreadableImage(f"DICOM pixel data cannot be decoded: {exc}") from exc
    if pixels.ndim == 3 and ds.get("SamplesPerPixel", 1) == 1:
        pixels = pixels[0]  # multi-frame: the first frame is the radiograph
    elif pixels.ndim == 3:
        pixels = pixels.mean(axis=-1)
    values = apply_modality_lut(pixels, ds)
    window = _voi_output_range(ds)
    values = apply_voi_lut(values, ds)
    # With a VOI window or LUT, its output range is what 0..255 spans (the window's contrast is kept); without one,
    # the film's own range.
    gray = _to_uint8(values, window)
    if str(ds.get("PhotometricInterpretation", "")).upper() == "MONOCHROME1":
        gray = 255 - gray  # MONOCHROME1 stores bone dark: invert so it reads like every other film
    return gray


def _pil_to_gray(image: Image.Image) -> np.ndarray:
    image = ImageOps.exif_transpose(image)
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        return _to_uint8(np.asarray(image))
    if image.mode == "P":
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA"):
        # Transparent pixels read as black, the colour of the film's blank border: grey x alpha / 255, which is the
        # composite over black, computed on 8-bit planes (a 36 MP RGBA film: about 300 MB at its peak, not 650).
        grey = ImageChops.multiply(image.convert("L"), image.getchannel("A"))
        return np.asarray(grey, dtype=np.uint8)
    if image.mode == "CMYK":
        image = image.convert("RGB")
    return np.asarray(image.convert("L"), dtype=np.uint8)


def read_grayscale(path: str | os.PathLike, draft_size: int | None = None, max_pixels: int | None = None) -> np.ndarray:
    """Read one file into an (H, W) uint8 array, or raise UnreadableImage with the reason.

    draft_size lets large JPEGs decode at a reduced scale (still >= draft_size per side),
    which is much faster when the image will be resized down anyway. max_pixels (default: max_pixels()) refuses a
    file whose header declares more pixels, before it is decoded.
    """
    path = os.fspath(path)
    try:
        source = image_source(path)
        if (source.getbuffer().nbytes if isinstance(source, io.BytesIO) else os.path.getsize(source)) == 0:
            raise UnreadableImage("empty file (0 bytes)")
        if looks_like_dicom(source):
            gray = _read_dicom(source, max_pixels)
        else:
            with Image.open(source, formats=PIL_FORMATS) as image:
                # only the first frame is decoded; colour counts its channels
                check_pixel_budget(*image.size, budget=max_pixels, channels=decoded_channels(image.mode))
                if draft_size and image.format == "JPEG":
                    image.draft("L", (draft_size, draft_size))
                image.load()
                gray = _pil_to_gray(image)
    except UnreadableImage:
        raise
    except Image.DecompressionBombError as exc:
        raise UnreadableImage(f"image too large (decompression-bomb guard): {exc}") from exc
    except PermissionError as exc:
        raise UnreadableImage("permission denied") from exc
    except FileNotFoundError as exc:
        raise UnreadableImage("file not found (a broken link?)") from exc
    except OSError as exc:
        if exc.errno == 40:  # ELOOP
            raise UnreadableImage("symbolic link loop") from exc
        raise UnreadableImage(f"not a readable image: {exc}") from exc
    except (ValueError, SyntaxError, MemoryError, tarfile.TarError) as exc:
        raise UnreadableImage(f"not a readable image: {exc}") from exc
    if gray.ndim != 2:
        raise UnreadableImage(f"unexpected pixel layout {gray.shape}")
    if min(gray.shape) < MIN_SIDE:
        raise UnreadableImage(
            f"image too small ({gray.shape[1]}x{gray.shape[0]} px; need at least {MIN_SIDE} px per side)"
        )
    return gray


def _first_value(value) -> float:
    """A DICOM value that may hold several (a window per view): the first."""
    try:
        return float(value)
    except TypeError:
        return float(value[0])


def _dicom_display(source, budget: int | None) -> tuple[np.ndarray, tuple[float, float]] | None:
    """(the DICOM's modality values spread over 0..255 by their own range, its first window (centre, width) in that
    scale), or None when it has no window to offer (no WindowCenter/WindowWidth, or a VOI LUT table instead)."""
    import pydicom  # deferred: only DICOM files need it
    from pydicom.pixels import apply_modality_lut  # deferred: only DICOM files need it

    check_deflated_budget(source, budget)
    try:
        ds = pydicom.dcmread(source)
        if ds.get("VOILUTSequence") or "WindowCenter" not in ds or "WindowWidth" not in ds:
            return None
        centre, width = _first_value(ds.WindowCenter), _first_value(ds.WindowWidth)
        check_pixel_budget(int(ds.Columns), int(ds.Rows), int(ds.get("NumberOfFrames", 1) or 1), budget)
        pixels = ds.pixel_array
        pixels = pixels[0] if pixels.ndim == 3 else pixels
        values = np.asarray(apply_modality_lut(pixels, ds), dtype=np.float32)
    except Exception:  # the film itself was read by read_grayscale; a window it cannot offer is no error
        return None
    low, high = float(values.min()), float(values.max())
    if not high > low or not width > 0:
        return None
    scale = 255.0 / (high - low)
    gray, centre = _to_uint8(values, (low, high)), (centre - low) * scale
    if str(ds.get("PhotometricInterpretation", "")).upper() == "MONOCHROME1":
        gray, centre = 255 - gray, 255.0 - centre
    return gray, (centre, width * scale)


def read_display(
    path: str | os.PathLike, max_side: int, max_pixels: int | None = None
) -> tuple[np.ndarray, dict[str, float | str]]:
    """The film for people to look at (the viewer): at its own aspect ratio, at most max_side px on its long side,
    and the window (brightness/contrast as centre and width on 0..255) to show it with first. A DICOM with its own
    window (WindowCenter/WindowWidth) gives its full range of values and that window; every other film is the one
    the model reads, under the identity window (centre 127.5, width 255)."""
    source = image_source(path)
    found = _dicom_display(source, max_pixels) if looks_like_dicom(source) else None
    if found is None:
        gray, window = read_grayscale(path, max_pixels=max_pixels), {"centre": 127.5, "width": 255.0, "source": "none"}
    else:
        gray, (centre, width) = found
        window = {"centre": centre, "width": width, "source": "the DICOM's own window"}
    height, width_px = gray.shape
    if max(height, width_px) > max_side:
        factor = max_side / max(height, width_px)
        size = (max(1, round(width_px * factor)), max(1, round(height * factor)))
        gray = np.asarray(Image.fromarray(gray).resize(size, Image.Resampling.BILINEAR, reducing_gap=2.0))
    return gray, window


def resize_square(gray: np.ndarray, size: int) -> np.ndarray:
    """Squash to size x size, as Kermany's 224 px set and the original Keras pipeline do."""
    if gray.shape == (size, size):
        return gray
    return np.asarray(Image.fromarray(gray).resize((size, size), Image.Resampling.BILINEAR, reducing_gap=2.0))


def read_resized(path: str | os.PathLike, size: int) -> np.ndarray:
    return resize_square(read_grayscale(path, draft_size=size), size)
