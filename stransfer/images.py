"""The only module that knows pixel formats: load (EXIF, modes, alpha, 16-bit), resize, save atomically."""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps, UnidentifiedImageError

from stransfer.errors import InputError, OutputError, UsageError, write_error
from stransfer.fileio import atomic_write, file_problem

# Extension -> Pillow format name; the output format follows the output file's extension.
SAVE_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP", ".tif": "TIFF", ".tiff": "TIFF"}
ALPHA_FORMATS = {"PNG", "WEBP", "TIFF"}
# 100 megapixels (10k x 10k): a decompression-bomb guard well above any photo people stylise.
DEFAULT_MAX_PIXELS = 100_000_000


@dataclass
class Picture:
    """An image as the engines see it: RGB in [0, 1], shape (1, 3, H, W), with its alpha set aside."""

    rgb: torch.Tensor
    alpha: torch.Tensor | None = None  # (1, 1, H, W) in [0, 1], or None when the image is opaque
    notes: list[str] = field(default_factory=list)  # things the user should hear about, e.g. "first frame"

    @property
    def size(self) -> tuple[int, int]:
        """(height, width)."""
        return self.rgb.shape[-2], self.rgb.shape[-1]


def _to_float_array(im: Image.Image) -> np.ndarray:
    """Pixel values of a single-band or RGB(A) image scaled to [0, 1] as float32, shape (H, W, C)."""
    if im.mode.startswith("I;16") or im.mode == "I":
        arr = np.asarray(im, dtype=np.float32)
        # Pillow reads 16-bit greyscale as I;16 or I: both hold 0..65535.
        arr = arr / 65535.0 if arr.max(initial=0) > 255 or im.mode.startswith("I;16") else arr / 255.0
        return np.clip(arr, 0.0, 1.0)[..., None]
    if im.mode == "F":
        arr = np.asarray(im, dtype=np.float32)
        peak = float(arr.max(initial=0))
        return np.clip(arr / peak if peak > 1 else arr, 0.0, 1.0)[..., None]
    arr = np.asarray(im, dtype=np.float32) / 255.0
    return arr if arr.ndim == 3 else arr[..., None]


def decode(im: Image.Image) -> Picture:
    """A Pillow image (any mode, EXIF-rotated) as a Picture."""
    notes: list[str] = []
    frames = getattr(im, "n_frames", 1)
    if frames > 1:
        notes.append(f"animated image with {frames} frames: the first frame is used")
        im.seek(0)
    im.load()
    im = ImageOps.exif_transpose(im)

    has_alpha = "A" in im.getbands() or "transparency" in im.info
    if im.mode.startswith("I") or im.mode == "F":
        grey = _to_float_array(im)
        rgb, alpha = np.repeat(grey, 3, axis=2), None
    elif has_alpha:
        rgba = _to_float_array(im.convert("RGBA"))
        rgb, alpha = rgba[..., :3], rgba[..., 3:]
        if alpha.min() >= 1.0:  # an alpha band that is fully opaque carries nothing worth keeping
            alpha = None
    else:
        rgb, alpha = _to_float_array(im.convert("RGB")), None

    def to_tensor(a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(a)).permute(2, 0, 1).unsqueeze(0).contiguous()

    return Picture(to_tensor(rgb), None if alpha is None else to_tensor(alpha), notes)


def load_image(path: Path | str, max_pixels: int = DEFAULT_MAX_PIXELS) -> Picture:
    """Read any image Pillow can read; every failure is an InputError naming the file."""
    path = Path(path)
    problem = file_problem(path)
    if problem:
        raise InputError(f"{path}: {problem}")
    try:
        if path.stat().st_size == 0:
            raise InputError(f"{path}: empty file (0 bytes)")
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")  # Pillow's warnings (corrupt EXIF, say) become notes naming the file
            # We check the pixel count ourselves, with the user's --max-pixels, instead of Pillow's fixed guard.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            previous, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
            try:
                with Image.open(path) as im:
                    w, h = im.size
                    if w * h > max_pixels:
                        raise InputError(
                            f"{path}: {w}x{h} is {w * h:,} pixels, more than the limit of {max_pixels:,} "
                            "(raise it with --max-pixels if you trust this file)"
                        )
                    if w < 1 or h < 1:
                        raise InputError(f"{path}: image has no pixels ({w}x{h})")
                    picture = decode(im)
            finally:
                Image.MAX_IMAGE_PIXELS = previous
        picture.notes += sorted({" ".join(str(w.message).split()) for w in caught})
        return picture
    except InputError:
        raise
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except PermissionError:
        raise InputError(f"{path}: permission denied") from None
    except UnidentifiedImageError:
        raise InputError(f"{path}: {_not_an_image(path)}") from None
    except (OSError, ValueError, SyntaxError, EOFError, MemoryError) as e:
        # Pillow reports truncated and corrupt data through these.
        raise InputError(f"{path}: cannot decode image ({e})") from None


# Leading bytes of the audio and media containers people most often pass by mistake.
AUDIO_MAGIC = (b"ID3", b"\xff\xfb", b"\xff\xf3", b"\xff\xf2", b"fLaC")
MEDIA_MAGIC = (b"\x1a\x45\xdf\xa3", b"OggS")


def _not_an_image(path: str | Path) -> str:
    """Why Pillow could not read a file, naming audio and video files as what they are."""
    try:
        with open(path, "rb") as f:
            head = f.read(16)
    except OSError:
        head = b""
    riff = head[8:12] if head.startswith(b"RIFF") else b""
    if head.startswith(AUDIO_MAGIC) or riff == b"WAVE" or head[4:11] == b"ftypM4A":
        return "an audio file with no video stream, not an image"
    if head.startswith(MEDIA_MAGIC) or riff == b"AVI " or head[4:8] == b"ftyp":
        return ("a media file, not an image (a video is stylised as a clip when its name ends in .mp4, .mov, "
                ".mkv, .avi or .webm)")
    return "not an image Pillow can read"


def luminance(rgb: torch.Tensor) -> torch.Tensor:
    """(N, 3, H, W) -> (N, 1, H, W) in [0, 1], ITU-R BT.601 weights."""
    return (0.299 * rgb[:, :1] + 0.587 * rgb[:, 1:2] + 0.114 * rgb[:, 2:3]).clamp(0, 1)


def fit_long_side(height: int, width: int, long_side: int) -> tuple[int, int]:
    """(h, w) scaled so the longer side is `long_side`, aspect ratio kept, each side at least 1."""
    scale = long_side / max(height, width)
    return max(1, round(height * scale)), max(1, round(width * scale))


def resize(image: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bicubic resize to (h, w), antialiased when shrinking, clamped back to [0, 1]."""
    if tuple(image.shape[-2:]) == tuple(size):
        return image
    out = F.interpolate(image, size=size, mode="bicubic", align_corners=False, antialias=True)
    return out.clamp_(0.0, 1.0)


def resize_long_side(image: torch.Tensor, long_side: int) -> torch.Tensor:
    return resize(image, fit_long_side(image.shape[-2], image.shape[-1], long_side))


def output_format(path: Path) -> str:
    fmt = SAVE_FORMATS.get(path.suffix.lower())
    if fmt is None:
        known = ", ".join(sorted(SAVE_FORMATS))
        raise UsageError(f"{path}: unknown output extension '{path.suffix}' (use one of {known})")
    return fmt


def check_writable(path: Path, overwrite: bool) -> None:
    """Fail early (before minutes of compute) when `path` could not be written."""
    output_format(path)
    if path.is_dir():
        raise OutputError(f"{path}: is a directory")
    # mkdir would fail on a file where a folder should be, with an error that reads like "already exists".
    blocking = next((parent for parent in path.parents if parent.exists() and not parent.is_dir()), None)
    if blocking is not None:
        raise OutputError(f"{path}: cannot write: {blocking} is a file, not a folder")
    if path.exists() and not overwrite:
        raise OutputError(f"{path}: already exists (pass --overwrite to replace it)")


def pil_to_tensor(image: Image.Image) -> torch.Tensor:
    """An 8-bit RGB Pillow image as (1, 3, H, W) in [0, 1]."""
    arr = np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
    return torch.from_numpy(arr).permute(2, 0, 1).unsqueeze(0).contiguous()


def to_pil(rgb: torch.Tensor, alpha: torch.Tensor | None = None) -> Image.Image:
    """(1, 3, H, W) in [0, 1] -> 8-bit Pillow image (RGBA when alpha is given)."""
    planes = rgb
    if alpha is not None:
        planes = torch.cat([rgb, resize(alpha.to(rgb), tuple(rgb.shape[-2:]))], dim=1)
    arr = planes.detach()[0].float().clamp(0, 1).mul(255).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()
    return Image.fromarray(np.ascontiguousarray(arr), "RGBA" if alpha is not None else "RGB")


def save_image(
    rgb: torch.Tensor,
    path: Path | str,
    *,
    alpha: torch.Tensor | None = None,
    overwrite: bool = False,
    quality: int = 95,
) -> Path:
    """Write atomically (see fileio.atomic_write): no partial file is ever seen, nothing is clobbered unasked."""
    path = Path(path)
    fmt = output_format(path)
    check_writable(path, overwrite)
    image = to_pil(rgb, alpha if fmt in ALPHA_FORMATS else None)
    options: dict[str, object] = {"PNG": {"compress_level": 6}, "JPEG": {"quality": quality},
                                  "WEBP": {"quality": quality}, "TIFF": {"compression": "tiff_deflate"}}[fmt]
    try:
        with atomic_write(path, replace=overwrite) as f:
            image.save(f, format=fmt, **options)
    except FileExistsError:  # appeared while we computed: still never clobbered
        raise OutputError(f"{path}: already exists (pass --overwrite to replace it)") from None
    except OSError as e:
        raise write_error(path, e) from None
    return path


def grid(rows: list[list[torch.Tensor]], height: int = 192, gap: int = 4) -> torch.Tensor:
    """A contact sheet: each row's images scaled to `height`, laid left to right on a white background."""
    scaled = [[resize(img.float().cpu(), (height, max(1, round(img.shape[-1] * height / img.shape[-2]))))
               for img in row] for row in rows]
    width = max(sum(img.shape[-1] for img in row) + gap * (len(row) - 1) for row in scaled)
    sheet = torch.ones(1, 3, len(rows) * height + gap * (len(rows) - 1), width)
    for r, row in enumerate(scaled):
        x = 0
        for img in row:
            top = r * (height + gap)
            sheet[..., top: top + height, x: x + img.shape[-1]] = img
            x += img.shape[-1] + gap
    return sheet
