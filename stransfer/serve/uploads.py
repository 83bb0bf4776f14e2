"""Images sent with a request, decoded within the server's limits: the pixel count is read from the header and
refused before a pixel is decoded (a decompression bomb is a few KB of PNG), and the bytes are decoded by
stransfer.images from a file in the server's own folder, removed as soon as it is read."""

from __future__ import annotations

import asyncio
import hashlib
import uuid
import warnings
from pathlib import Path

from PIL import Image
from starlette.datastructures import UploadFile

from stransfer import images
from stransfer.errors import InputError
from stransfer.serve.problems import ServeError

# A 16 MP photo decodes to a 192 MB float tensor: at most this many decode at once, whatever the clients do.
CONCURRENT_DECODES = 2


class Uploads:
    def __init__(self, workdir: Path, max_pixels: int) -> None:
        self.workdir = workdir
        self.max_pixels = max_pixels
        self._slots: asyncio.Semaphore | None = None

    async def picture(self, upload: UploadFile, name: str) -> tuple[images.Picture, str]:
        """The upload in form field `name` as a Picture, with the sha256 of its bytes (what the style cache keys on)."""
        data = await upload.read()
        if not data:
            raise ServeError(400, "bad_image", f"{name}: empty file (0 bytes)", name)
        if self._slots is None:  # made here, inside the server's event loop
            self._slots = asyncio.Semaphore(CONCURRENT_DECODES)
        async with self._slots:
            picture = await asyncio.to_thread(self._decode, data, name)
        return picture, hashlib.sha256(data).hexdigest()

    def _decode(self, data: bytes, name: str) -> images.Picture:
        path = self.workdir / f"upload-{uuid.uuid4().hex}-{name}"
        path.write_bytes(data)
        try:
            self._check_pixels(path, name)
            return images.load_image(path, self.max_pixels)
        except InputError as e:
            raise ServeError(400, "bad_image", str(e).replace(str(path), name), name) from None
        finally:
            path.unlink(missing_ok=True)

    def _check_pixels(self, path: Path, name: str) -> None:
        """Too many pixels is 413 (too large), not 400 (not an image): refused on the header alone."""
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                with Image.open(path) as im:
                    width, height = im.size
        except Image.DecompressionBombError:
            width, height = self.max_pixels + 1, 1  # Pillow's own guard: over twice its limit of 89 MP
        except Exception:  # noqa: BLE001 - not an image, truncated...: load_image says which, in one line
            return
        if width * height > self.max_pixels:
            raise ServeError(413, "too_large", f"{name}: {width}x{height} is {width * height:,} pixels, more than "
                             f"this server's limit of {self.max_pixels:,}", name)
