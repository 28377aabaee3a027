"""decode_gray on the inputs real users have: every Pillow mode, high bit depth, EXIF, DICOM, broken files."""
from __future__ import annotations

import io
import struct
import sys
import zlib

import numpy as np
import pytest
from PIL import Image

from fracture_edge.edge_runtime import decoding
from fracture_edge.edge_runtime.decoding import ImageDecodeError, decode_gray
from fracture_edge.edge_runtime.errors import MissingExtraError

H, W = 20, 40


def save(img: Image.Image, path, **kwargs):
    img.save(path, **kwargs)
    return path


def gray16(value_max: int) -> Image.Image:
    ramp = np.linspace(0, value_max, H * W).reshape(H, W).astype(np.uint16)
    return Image.fromarray(ramp)  # 16-bit grayscale (mode I;16)


def exif_rotated_jpeg(path):
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise to display
    return save(Image.new("L", (W, H), 90), path, exif=exif.tobytes())


def png_header(width: int, height: int) -> bytes:
    """A PNG whose IHDR claims width x height 8-bit gray pixels (no real pixel data)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def truncated_jpeg(path):
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64), dtype=np.uint8)).save(buf, "JPEG")
    path.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    return path


def raw_bytes(data: bytes):
    """A writer that puts `data` into the file as is."""
    def write(path):
        path.write_bytes(data)
        return path
    return write


def make_folder(path):
    path.mkdir()
    return path


def palette_image() -> Image.Image:
    img = Image.new("P", (W, H), 1)
    img.putpalette([0, 0, 0, 0, 0, 255] + [0] * 762)  # index 1 = pure blue
    return img


# (file name, writer(path) -> path, expected shape, expected mean value, tolerance)
GOOD_INPUTS = [
    ("gray.png", lambda p: save(Image.new("L", (W, H), 100), p), (H, W), 100.0, 0.01),
    ("gray12.png", lambda p: save(gray16(4095), p), (H, W), 127.5, 0.5),     # 12-bit: x * 255/4095
    ("gray16.png", lambda p: save(gray16(65535), p), (H, W), 127.5, 0.5),    # 16-bit: x * 255/65535
    ("gray16_8bit_range.png", lambda p: save(gray16(255), p), (H, W), 127.5, 0.5),
    ("red.png", lambda p: save(Image.new("RGB", (W, H), (255, 0, 0)), p), (H, W), 0.299 * 255, 0.01),
    ("rgba_clear.png", lambda p: save(Image.new("RGBA", (W, H), (255, 255, 255, 0)), p), (H, W), 0.0, 0.01),
    ("rgba_opaque.png", lambda p: save(Image.new("RGBA", (W, H), (0, 255, 0, 255)), p), (H, W), 0.587 * 255, 0.01),
    ("la_half.png", lambda p: save(Image.new("LA", (W, H), (200, 128)), p), (H, W), 200 * 128 / 255, 1.0),
    ("palette.png", lambda p: save(palette_image(), p), (H, W), 0.114 * 255, 0.01),
    ("cmyk.jpg", lambda p: save(Image.new("CMYK", (W, H), (0, 0, 0, 0)), p, quality=95), (H, W), 255.0, 2.0),
    ("gray.bmp", lambda p: save(Image.new("L", (W, H), 33), p), (H, W), 33.0, 0.01),
    ("rgb.tiff", lambda p: save(Image.new("RGB", (W, H), (10, 10, 10)), p), (H, W), 10.0, 0.01),
    ("float.tiff", lambda p: save(Image.fromarray(np.tile(np.linspace(0, 1, W, dtype=np.float32), (H, 1))), p),
     (H, W), 127.5, 0.5),
    ("rotated.jpg", exif_rotated_jpeg, (W, H), 90.0, 2.0),  # EXIF orientation 6: shape transposed
]

# (file name, writer(path) -> path, words expected in the reason)
BAD_INPUTS = [
    ("truncated.jpg", truncated_jpeg, "truncated"),
    ("empty.png", raw_bytes(b""), "empty file"),
    ("notes.png", raw_bytes(b"this is not an image"), "not an image"),
    ("bomb.png", raw_bytes(png_header(100_000, 100_000)), "too large"),
    ("just_over_limit.png", raw_bytes(png_header(5_657, 5_657)), "32.0 MP; the limit is 32 MP"),
    ("too_long.png", raw_bytes(png_header(16_385, 1_000)), "a side of 16385 px; the limit is 16384 px"),
    ("too_elongated.png", raw_bytes(png_header(2_001, 100)), "aspect ratio 20:1; the limit is 20:1"),
    ("missing.png", lambda p: p, "file not found"),
    ("folder.png", make_folder, "folder"),
]


@pytest.mark.parametrize("name, write, shape, mean, tol", GOOD_INPUTS, ids=[c[0] for c in GOOD_INPUTS])
def test_decodes_supported_inputs(tmp_path, name, write, shape, mean, tol):
    gray = decode_gray(write(tmp_path / name))
    assert gray.dtype == np.float32 and gray.shape == shape
    assert 0.0 <= gray.min() and gray.max() <= 255.0
    assert gray.mean() == pytest.approx(mean, abs=tol)


@pytest.mark.parametrize("name, write, reason", BAD_INPUTS, ids=[c[0] for c in BAD_INPUTS])
def test_rejects_bad_inputs_with_path_and_reason(tmp_path, name, write, reason):
    path = write(tmp_path / name)
    with pytest.raises(ImageDecodeError) as info:
        decode_gray(path)
    message = str(info.value)
    assert message.startswith(f"{tmp_path / name}: ") and reason in message


def test_truncated_images_are_not_silently_accepted(tmp_path):
    from PIL import ImageFile

    with pytest.raises(ImageDecodeError):
        decode_gray(truncated_jpeg(tmp_path / "cut.jpg"))
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False


@pytest.mark.parametrize("values, expected_max", [([0, 1023], 255.0), ([0, 1024], 1024 * 255 / 4095),
                                                  ([0, 16383], 255.0), ([0, 40000], 40000 * 255 / 65535)])
def test_high_bit_depth_scales_by_detector_bits(values, expected_max):
    scaled = decoding.scale_integer_gray(np.array(values, np.uint16))
    assert scaled.max() == pytest.approx(expected_max, rel=1e-5) and scaled.min() == 0.0


def write_dicom(path, photometric: str, stored: np.ndarray, window: tuple[float, float] | None,
                rescale: tuple[float, float] = (1.0, 0.0)):
    pydicom = pytest.importorskip("pydicom")
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1.1"  # digital X-ray
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = pydicom.Dataset()
    ds.file_meta = meta
    ds.Rows, ds.Columns = stored.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, photometric
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.RescaleSlope, ds.RescaleIntercept = rescale
    if window is not None:
        ds.WindowCenter, ds.WindowWidth = window
    ds.PixelData = stored.astype(np.uint16).tobytes()
    ds.save_as(str(path), enforce_file_format=True)
    return path


@pytest.mark.parametrize("photometric, window, rescale, first, last", [
    ("MONOCHROME2", None, (1.0, 0.0), 0.0, 255.0),            # no VOI: stretched min..max
    ("MONOCHROME1", None, (1.0, 0.0), 255.0, 0.0),            # inverted: low stored values are white
    ("MONOCHROME2", (2048.0, 4096.0), (1.0, 0.0), 0.0, 255.0),  # full-range window
    ("MONOCHROME2", (1000.0, 2.0), (1.0, 0.0), 0.0, 255.0),   # narrow window: below -> 0, above -> 255
    ("MONOCHROME2", (2000.0, 1000.0), (2.0, 0.0), 0.0, 255.0),  # rescale applied before the window
])
def test_dicom_applies_modality_voi_and_monochrome1(tmp_path, photometric, window, rescale, first, last):
    stored = np.tile(np.linspace(0, 4095, W).astype(np.uint16), (H, 1))
    gray = decode_gray(write_dicom(tmp_path / "xray.dcm", photometric, stored, window, rescale))
    assert gray.shape == (H, W) and gray.dtype == np.float32
    assert gray[0, 0] == pytest.approx(first, abs=0.5) and gray[0, -1] == pytest.approx(last, abs=0.5)
    assert 0.0 <= gray.min() and gray.max() <= 255.0


def test_dicom_window_maps_linearly(tmp_path):
    stored = np.array([[1000, 1500, 2000, 2500, 3000]], np.uint16)
    gray = decode_gray(write_dicom(tmp_path / "w.dcm", "MONOCHROME2", stored, (2000.0, 1001.0)))
    assert gray[0, 0] == pytest.approx(0, abs=0.5) and gray[0, 2] == pytest.approx(127.5, abs=1.0)
    assert gray[0, 4] == pytest.approx(255, abs=0.5)


def test_dicom_without_pydicom_names_the_extra(tmp_path, monkeypatch):
    path = tmp_path / "x.dcm"
    path.write_bytes(b"\0" * 128 + b"DICM" + b"\0" * 16)
    monkeypatch.setitem(sys.modules, "pydicom", None)
    monkeypatch.setitem(sys.modules, "pydicom.pixels", None)
    with pytest.raises(MissingExtraError) as info:
        decode_gray(path)
    assert str(info.value).startswith(f"{path}: ") and "fracture-edge[dicom]" in str(info.value)


def test_dicom_detected_by_magic_without_suffix(tmp_path):
    stored = np.tile(np.linspace(0, 4095, W).astype(np.uint16), (H, 1))
    path = write_dicom(tmp_path / "scan.dcm", "MONOCHROME2", stored, None)
    renamed = path.rename(tmp_path / "scan_no_suffix")
    assert decode_gray(renamed).shape == (H, W)


# ---- strips and views change no bit: the decoder before the memory budget, kept here as the reference -------

def reference_image_to_gray(img: Image.Image) -> np.ndarray:
    """decoding.image_to_gray as it was before the memory budget (whole-image conversions)."""
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        img = Image.alpha_composite(Image.new("RGBA", img.size, (0, 0, 0, 255)), rgba).convert("RGB")
    if img.mode == "L":
        return np.asarray(img, dtype=np.float32)
    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        values = np.asarray(img).astype(np.float64)
        low, high = float(values.min()), float(values.max())
        if low < 0 or high > 65535:
            return reference_stretch(values)
        bits = next(b for b in (8, 10, 12, 14, 16) if high <= 2 ** b - 1)
        return (values * (255.0 / (2 ** bits - 1))).astype(np.float32)
    if img.mode == "F":
        return reference_stretch(np.asarray(img, dtype=np.float64))
    if img.mode == "1":
        return np.asarray(img.convert("L"), dtype=np.float32)
    rgb = np.asarray(img.convert("RGB"), dtype=np.float32)
    return (rgb[..., 0] * 0.299 + rgb[..., 1] * 0.587 + rgb[..., 2] * 0.114).astype(np.float32)


def reference_stretch(values: np.ndarray) -> np.ndarray:
    values = np.nan_to_num(values.astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    low, high = float(values.min()), float(values.max())
    if high <= low:
        return np.zeros(values.shape, np.float32)
    return ((values - low) * (255.0 / (high - low))).astype(np.float32)


def reference_decode(path) -> np.ndarray:
    from PIL import ImageOps

    with Image.open(path) as img:
        img.load()
        return reference_image_to_gray(ImageOps.exif_transpose(img))


def mode_images(rng) -> dict:
    """(name -> (image, save format)) in every mode family the decoder handles, with varied pixels."""
    h, w = 23, 31
    rgb = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    gray = rng.integers(0, 256, (h, w), dtype=np.uint8)
    alpha = rng.integers(0, 256, (h, w), dtype=np.uint8)
    palette = Image.fromarray(gray).convert("P")
    transparent = palette.copy()
    transparent.info["transparency"] = int(gray[0, 0])
    return {
        "L": (Image.fromarray(gray), "PNG"), "RGB": (Image.fromarray(rgb), "PNG"),
        "RGBA": (Image.fromarray(np.dstack([rgb, alpha])), "PNG"), "LA": (Image.fromarray(np.dstack([gray, alpha]), "LA"), "PNG"),
        "P": (palette, "PNG"), "P-transparent": (transparent, "PNG"), "1": (Image.fromarray(gray > 128), "PNG"),
        "I;16": (Image.fromarray(rng.integers(0, 4096, (h, w)).astype(np.uint16)), "PNG"),
        "I;16-full": (Image.fromarray(rng.integers(0, 65536, (h, w)).astype(np.uint16)), "TIFF"),
        "I": (Image.fromarray(rng.integers(-70000, 70000, (h, w)).astype(np.int32)), "TIFF"),
        "F": (Image.fromarray(rng.normal(0, 3, (h, w)).astype(np.float32)), "TIFF"),
        "CMYK": (Image.fromarray(rgb).convert("CMYK"), "JPEG"), "YCbCr-jpeg": (Image.fromarray(rgb), "JPEG"),
    }


@pytest.mark.parametrize("orientation", [1, 2, 3, 4, 5, 6, 7, 8])
def test_strip_decoding_is_bit_identical_to_whole_image_decoding(tmp_path, monkeypatch, orientation):
    """Every mode, every EXIF orientation, strips of 1-3 rows: the same float32 values as the old decoder."""
    from fracture_edge.edge_runtime import pixels

    monkeypatch.setattr(pixels, "STRIP_BYTES", 600)           # a strip of 1-3 rows: many strips per image
    for name, (img, fmt) in mode_images(np.random.default_rng(orientation)).items():
        path = tmp_path / f"{name}.{fmt.lower()}"
        exif = Image.Exif()
        exif[0x0112] = orientation
        img.save(path, format=fmt, **({"exif": exif.tobytes()} if fmt in ("PNG", "JPEG") else {}))
        if fmt == "TIFF" and orientation != 1:
            continue                                          # Pillow writes no EXIF orientation into a TIFF here
        got, expected = decode_gray(path), reference_decode(path)
        assert got.dtype == expected.dtype == np.float32 and got.shape == expected.shape, name
        assert np.array_equal(got, expected), f"{name}, orientation {orientation}"
        assert got.flags.c_contiguous


def reference_decode_dicom(path) -> np.ndarray:
    """dicom.decode_dicom as it was before the memory budget (the whole dataset, whole-frame LUTs)."""
    import pydicom
    from pydicom.pixels import apply_modality_lut, apply_voi_lut

    ds = pydicom.dcmread(str(path))
    pixels = ds.pixel_array
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).upper()
    if not photometric.startswith("MONOCHROME"):
        frame = pixels[0] if pixels.ndim == 4 else pixels
        if frame.ndim == 3:
            rgb = frame.astype(np.float32)
            return (rgb[..., 0] * 0.299 + rgb[..., 1] * 0.587 + rgb[..., 2] * 0.114).astype(np.float32)
        return reference_stretch(frame)
    if pixels.ndim == 3:
        pixels = pixels[0]
    values = np.asarray(apply_modality_lut(pixels, ds), dtype=np.float64)
    if "VOILUTSequence" not in ds and "WindowCenter" not in ds:
        gray = reference_stretch(values)
    else:
        shown = np.asarray(apply_voi_lut(values, ds), dtype=np.float64)
        low, high = np.asarray(apply_voi_lut(np.array([-1e12, 1e12]), ds), dtype=np.float64)
        gray = (reference_stretch(shown) if not high > low else
                np.clip((shown - low) * (255.0 / (high - low)), 0.0, 255.0).astype(np.float32))
    return (255.0 - gray).astype(np.float32) if photometric == "MONOCHROME1" else gray


def write_dicom_frames(path, stored: np.ndarray, photometric="MONOCHROME2", window=None, rescale=None):
    """A DICOM file of (frames, rows, columns[, 3]) or (rows, columns) stored values."""
    pydicom = pytest.importorskip("pydicom")
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = "1.2.840.10008.5.1.4.1.1.1.1", generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = pydicom.Dataset()
    ds.file_meta = meta
    colour = photometric == "RGB"
    frames = stored.shape[0] if stored.ndim == (4 if colour else 3) else 1
    ds.Rows, ds.Columns = stored.shape[-3:-1] if colour else stored.shape[-2:]
    if frames > 1:
        ds.NumberOfFrames = frames
    ds.SamplesPerPixel, ds.PhotometricInterpretation = (3 if colour else 1), photometric
    if colour:
        ds.PlanarConfiguration = 0
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    else:
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    if rescale:
        ds.RescaleSlope, ds.RescaleIntercept = rescale
    if window:
        ds.WindowCenter, ds.WindowWidth = window
    ds.PixelData = stored.astype(np.uint8 if colour else np.uint16).tobytes()
    ds.save_as(str(path), enforce_file_format=True)
    return path


@pytest.mark.parametrize("photometric, window, rescale, frames", [
    ("MONOCHROME2", None, None, 1), ("MONOCHROME1", None, (2.0, -100.0), 1), ("MONOCHROME2", (2000.0, 3000.0), None, 1),
    ("MONOCHROME1", (1500.0, 800.0), (1.5, 20.0), 3), ("MONOCHROME2", (2048.0, 1.0), None, 1), ("RGB", None, None, 1),
    ("RGB", None, None, 2)])
def test_strip_dicom_decoding_is_bit_identical(tmp_path, monkeypatch, photometric, window, rescale, frames):
    from fracture_edge.edge_runtime import pixels

    monkeypatch.setattr(pixels, "STRIP_BYTES", 700)
    rng = np.random.default_rng(frames + len(photometric))
    shape = (frames, 29, 37) + ((3,) if photometric == "RGB" else ())
    stored = rng.integers(0, 256 if photometric == "RGB" else 4096, shape)
    path = write_dicom_frames(tmp_path / "x.dcm", stored if frames > 1 else stored[0], photometric, window, rescale)
    got, expected = decode_gray(path), reference_decode_dicom(path)
    assert got.dtype == np.float32 and np.array_equal(got, expected)
    with open(path, "rb") as fh:
        assert np.array_equal(decoding.decode_gray_bytes(fh.read(), "upload.dcm"), expected)
