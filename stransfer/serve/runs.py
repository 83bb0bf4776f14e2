"""Engine runs on a worker thread, through the Python API: Stylizers kept loaded (least recently used dropped
first), textures through stransfer.texture; each run's image comes back as PNG bytes."""

from __future__ import annotations

import threading
import uuid
from collections import OrderedDict
from typing import Any

from PIL import Image

import stransfer
from stransfer import api, images
from stransfer.device import Runtime, make_runtime
from stransfer.serve.catalogue import encode
from stransfer.serve.forms import TEXTURE, RunRequest
from stransfer.serve.settings import ServeConfig
from stransfer.serve.work import Task


class Engines:
    """Stylizers by everything their build depends on: the engine, its settings, the style and colour mode. The API
    fixes a Stylizer's settings at build, so moving a slider builds another (AdaIN: about a second to load)."""

    def __init__(self, config: ServeConfig) -> None:
        self.config = config
        self._stylizers: OrderedDict[tuple, tuple[api.Stylizer, threading.Lock]] = OrderedDict()
        self._lock = threading.Lock()
        self._runtime: Runtime | None = None

    def runtime(self) -> Runtime:
        """Made on first use, on a worker thread: `auto` precision times a bf16 matmul."""
        with self._lock:
            if self._runtime is None:
                self._runtime = make_runtime(self.config.device, self.config.precision)
            return self._runtime

    def run(self, request: RunRequest, task: Task) -> bytes:
        if request.method == TEXTURE:
            return encode(self._texture(request, task))
        stylizer, lock = self._stylizer(request)
        assert request.content is not None
        rgb = images.resize_long_side(request.content.rgb, request.size)
        with lock:  # one image at a time through a Stylizer, should several workers share it
            out = stylizer(rgb, size=None, on_event=task.on_event)
        if request.content.alpha is not None:
            out = images.to_pil(images.pil_to_tensor(out), request.content.alpha)
        return encode(out)

    def _stylizer(self, request: RunRequest) -> tuple[api.Stylizer, threading.Lock]:
        key = (request.method, request.options, request.style_key, request.style_name, request.preserve_color)
        with self._lock:
            if key in self._stylizers:
                self._stylizers.move_to_end(key)
                return self._stylizers[key]
        style: Any = request.style if request.style is not None else (
            [request.style_name] if request.style_name else None)
        stylizer = api.Stylizer(request.method, style, preserve_color=request.preserve_color,
                                runtime=self.runtime(), vgg_weights=self.config.vgg_weights,
                                max_pixels=self.config.max_pixels, **dict(request.options))
        with self._lock:
            entry = self._stylizers.setdefault(key, (stylizer, threading.Lock()))
            while len(self._stylizers) > self.config.engines:
                self._stylizers.popitem(last=False)
        return entry

    def _texture(self, request: RunRequest, task: Task) -> Image.Image:
        """stransfer.texture takes its settings from a TOML file only: the iterations go in one, in the server's
        own folder, for the length of the run."""
        iterations = dict(request.options).get("iterations")
        toml = None
        if iterations is not None and self.config.workdir is not None:
            counts = api.engine_config("gatys", iterations=iterations).iterations
            toml = self.config.workdir / f"texture-{uuid.uuid4().hex}.toml"
            toml.write_text(f"iterations = [{', '.join(map(str, counts))}]\n")
        try:
            return stransfer.texture(request.style, size=request.size, config=toml, device=self.config.device,
                                     precision=self.config.precision, vgg_weights=self.config.vgg_weights,
                                     on_event=task.on_event)
        finally:
            if toml is not None:
                toml.unlink(missing_ok=True)

    @property
    def loaded(self) -> int:
        return len(self._stylizers)
