"""Shared by :func:`predict_collection` and :func:`predict_large`: model shipping, threads,
device moves, checks.

No lock serializes forward passes: a fitted model's feature engine is safe to use from many
threads at once (:mod:`skhyper.features`). The one lock here guards moving a model to another
device, once per process.
"""

from __future__ import annotations

import os
import pickle
import threading
import warnings
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from numbers import Integral
from typing import Any

import numpy as np
import torch
from sklearn.utils.validation import check_is_fitted

from .._params import resolve_device
from ..estimators import HypercolumnTransformer
from ..features import FeatureEngine
from ..io import ImageData, read_image
from ._memory import steady_threshold

#: Methods :func:`predict_collection` and :func:`predict_large` can apply.
METHODS = ("predict", "predict_proba", "decision_function", "transform_dense")

_MOVE_LOCK = threading.Lock()  # device moves only, never forward passes


# ----------------------------------------------------------------------------- checks


def _import_dask(what: str) -> tuple[Any, Any]:
    try:
        import dask
        import dask.array as da
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError(
            f"{what} needs dask: pip install \"skhyper[dask]\" (dask[array] and distributed)."
        ) from err
    return dask, da


def _check_method(model: Any, method: Any, owner: str) -> None:
    if not isinstance(method, str) or method not in METHODS:
        raise ValueError(
            f"The 'method' parameter of {owner} must be one of {METHODS}. Got {method!r} instead."
        )
    if not hasattr(model, method):
        raise ValueError(
            f"The 'method' parameter of {owner} is {method!r}, but the model "
            f"({type(model).__name__}) has no such method; it has "
            f"{[m for m in METHODS if hasattr(model, m)]}."
        )


def _check_fitted(model: Any) -> None:
    if hasattr(model, "fit") and hasattr(model, "get_params"):
        check_is_fitted(model)


def _check_positive(value: Any, param: str, owner: str, *, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, Integral) or value < 1:
        raise ValueError(
            f"The '{param}' parameter of {owner} must be a positive int"
            f"{' or None' if allow_none else ''}. Got {value!r} instead."
        )


def _hypercolumns_of(model: Any) -> HypercolumnTransformer | None:
    if isinstance(model, HypercolumnTransformer):
        return model
    hc = getattr(model, "hypercolumns_", None)
    return hc if isinstance(hc, HypercolumnTransformer) else None


def _shallow(obj: Any) -> Any:
    """A copy sharing every attribute (no pickling hooks run, no tensor copied)."""
    new = object.__new__(type(obj))
    new.__dict__.update(obj.__dict__)
    return new


def _without_cache(model: Any) -> Any:
    """``model``, or a shallow copy whose transformer has no MapCache.

    A cache only helps images seen before; on a stream of new images it would
    grow to its budget in every worker.
    """
    hc = _hypercolumns_of(model)
    if hc is None or getattr(hc, "cache", None) is None:
        return model
    hc2 = _shallow(hc)
    hc2.cache = None
    hc2.engine_ = hc.engine_.replace(cache=None)
    if hc is model:
        return hc2
    out = _shallow(model)
    out.hypercolumns_ = hc2
    return out


def _to_device(model: Any, device: Any) -> Any:
    """Move a skhyper model's backbone to ``device`` in place (once; thread-safe)."""
    if device is None:
        return model
    engine = _hypercolumns_of(model).engine_
    dev = resolve_device(device)
    if engine.device != dev:
        with _MOVE_LOCK:
            if engine.device != dev:
                engine.to(dev)
    return model


class _Shipped:
    """A model that crosses processes as bytes pickled once, on the caller's side.

    Dask moves a graph's values between workers by pickling them where they
    live. A live model must not be pickled while a task runs it: the backbone
    collects its layers with temporary forward hooks, which would travel
    with it. This holder pickles the model once, before any task runs, and
    every later copy sends those bytes; each process unpickles them once.
    """

    def __init__(self, model: Any = None, blob: bytes | None = None) -> None:
        self._model = model
        self._blob = blob
        self._lock = threading.Lock()

    def get(self) -> Any:
        if self._model is None:
            with self._lock:
                if self._model is None:
                    self._model = _loads(self._blob)
        return self._model

    def __reduce__(self) -> tuple:
        if self._blob is None:
            self._blob = _dumps(self._model)
        return (_Shipped, (None, self._blob))


def _dumps(obj: Any) -> bytes:
    try:
        import cloudpickle
    except ImportError:  # pragma: no cover - dask depends on cloudpickle
        return pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    return cloudpickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)


def _loads(blob: bytes) -> Any:
    return pickle.loads(blob)


def _live(ref: Any) -> Any:
    return ref.get() if isinstance(ref, _Shipped) else ref


def _model_ref(dask: Any, model: Any, client: Any, token: str) -> Any:
    """The model as a graph value: scattered to every worker, or one key of the graph."""
    holder = _Shipped(model)
    if client is not None:
        return client.scatter(holder, broadcast=True, hash=False)
    return dask.delayed(holder, name=f"skhyper-model-{token}", traverse=False)


def _window_engine(hc: HypercolumnTransformer) -> FeatureEngine:
    """The transformer's engine for one window: no cache, no tiling, no progress bar."""
    return hc.engine_.replace(cache=None, tile_size=None, verbose=False)


# ----------------------------------------------------------------------------- threads


@contextmanager
def _torch_threads(n: int | None) -> Iterator[None]:
    """Run with ``torch.set_num_threads(n)`` in this thread (None: leave it)."""
    if n is None:
        yield
        return
    prev = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(prev)


def _threads_here(threads: int | dict | None) -> int | None:
    if not isinstance(threads, dict):
        return threads
    try:
        from distributed import get_worker

        return threads.get(get_worker().address)
    except (ImportError, ValueError):
        return None


def _n_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not on Linux
        return os.cpu_count() or 1


class SlowWorkerWarning(UserWarning):
    """The cluster's workers are set up in a way that slows torch down."""


def _worker_facts() -> tuple[int, str | None, int | None]:
    return _n_cores(), os.environ.get("MALLOC_TRIM_THRESHOLD_"), steady_threshold()


def _cluster_threads(client: Any, n_threads: int | None, model: Any,
                     device: Any) -> int | dict[str, int]:
    """Torch threads per worker (the host's cores over the threads of its workers, unless
    ``n_threads``), warning when CPU workers run with a small ``MALLOC_TRIM_THRESHOLD_``."""
    facts = client.run(_worker_facts)
    hc = _hypercolumns_of(model)
    on_cpu = hc is not None and (torch.device(device).type if device is not None
                                 else hc.device_.type) == "cpu"
    # steady_allocator() on a worker overrides the environment's trim threshold
    trims = {str(v[1]) for v in facts.values() if v[1] is not None and v[2] is None}
    small = sorted(v for v in trims if v.isdigit() and int(v) < 2**26)
    if on_cpu and small:
        warnings.warn(
            f"The Dask workers run with MALLOC_TRIM_THRESHOLD_={small[0]} (dask's nanny "
            "default), which makes glibc map and unmap every large torch buffer: CPU inference "
            "runs about 2x slower. Run client.run(skhyper.parallel.steady_allocator) once, "
            "or start the cluster without it: env = dict(dask.config.get("
            "'distributed.nanny.pre-spawn-environ')); env.pop('MALLOC_TRIM_THRESHOLD_'); "
            "with dask.config.set({'distributed.nanny.pre-spawn-environ': env}): "
            "cluster = LocalCluster(...)",
            SlowWorkerWarning,
            stacklevel=3,
        )
    if n_threads is not None:
        return n_threads
    try:
        info = client.scheduler_info(n_workers=-1)["workers"]
    except TypeError:  # older distributed
        info = client.scheduler_info()["workers"]
    per_host = Counter()
    for w in info.values():
        per_host[w["host"]] += w["nthreads"]
    return {
        addr: max(1, int(facts[addr][0]) // max(1, per_host[w["host"]]))
        for addr, w in info.items() if addr in facts
    }


# ----------------------------------------------------------------------------- collections


def _read_item(item: Any) -> Any:
    """An image array as it is; a file path read with :func:`skhyper.read_image` (an
    :class:`~skhyper.io.ImageData`, a stack for a multi-page file)."""
    return read_image(item) if isinstance(item, (str, os.PathLike)) else item


class Failed:
    """One image of a batch that failed: where it was and why (small, picklable)."""

    def __init__(self, item: Any, err: BaseException) -> None:
        self.item = os.fspath(item) if isinstance(item, (str, os.PathLike)) else None
        first = (str(err).strip().splitlines() or [""])[0]
        self.error = f"{type(err).__name__}: {first[:300]}"

    def __repr__(self) -> str:
        where = f" ({self.item})" if self.item else ""
        return f"Failed{where}: {self.error}"


def _apply(model: Any, items: Any, method: str) -> list:
    """``method`` on every image of ``items``: the planes of every file go through the model
    (in one call with the arrays), and a stack's results are put back into a stack."""
    read = [_read_item(x) for x in items]
    planes: list = []
    spans = []
    for r in read:
        these = r.planes() if isinstance(r, ImageData) else [r]
        spans.append((len(planes), len(planes) + len(these)))
        planes += these
    out = [np.asarray(o) for o in getattr(model, method)(planes)]
    return [r.stack(out[s:e]) if isinstance(r, ImageData) else out[s]
            for r, (s, e) in zip(read, spans)]


def _run_batch(model: Any, items: Any, method: str, threads: Any, device: Any,
               isolate: bool = False) -> list:
    """Apply ``method`` to a batch of images (arrays or paths); the task run on workers.

    When the batch fails, its images are tried one by one: with ``isolate`` a failing one
    becomes a :class:`Failed` in the result (the others are kept), without it the error of
    the first failing image is raised, naming it.
    """
    with _torch_threads(_threads_here(threads)):
        model = _to_device(_live(model), device)
        try:
            return _apply(model, items, method)
        except Exception as err:
            if len(items) == 1:
                if isolate:
                    return [Failed(items[0], err)]
                raise
        out: list = []
        for j, item in enumerate(items):
            try:
                out += _apply(model, [item], method)
            except Exception as err:
                if not isolate:
                    if hasattr(err, "add_note"):  # Python >= 3.11
                        err.add_note(f"(skhyper: image {j} of this batch, {_describe(item)})")
                    raise
                out.append(Failed(item, err))
        return out


def _run_stack(model: Any, stack: np.ndarray, method: str, threads: Any, device: Any,
               dtype: np.dtype) -> np.ndarray:
    out = _run_batch(model, list(np.asarray(stack)), method, threads, device)
    return np.stack(out).astype(dtype, copy=False)


def _describe(item: Any) -> str:
    if isinstance(item, (str, os.PathLike)):
        return f"file {os.fspath(item)!r}"
    shape = getattr(item, "shape", None)
    return f"{type(item).__name__} of shape {shape}" if shape is not None else type(item).__name__


def _is_dask_array(x: Any) -> bool:
    return type(x).__module__.startswith("dask.array") and hasattr(x, "dask")


def _check_collection(images: Any) -> tuple[Any, str]:
    """Validate the collection; return it and its kind ("list", "stack" or "dask")."""
    if _is_dask_array(images):
        if images.ndim not in (3, 4):
            raise ValueError(
                "The 'images' parameter must be a stack (n_images, height, width[, channels]) "
                f"when it is a dask array; got shape {images.shape}."
            )
        if images.shape[0] == 0:
            raise ValueError(
                f"The 'images' parameter must hold at least one image; got shape {images.shape}."
            )
        return images, "dask"
    if isinstance(images, np.ndarray):
        if images.ndim != 4:
            raise ValueError(
                "The 'images' parameter must be a list of images, a list of file paths or a "
                "stack (n_images, height, width, channels); got an array of shape "
                f"{images.shape}. For one image call the model's method (or predict_large)."
            )
        if images.shape[0] == 0:
            raise ValueError(
                f"The 'images' parameter must hold at least one image; got shape {images.shape}."
            )
        return list(images), "stack"
    if isinstance(images, (str, os.PathLike)) or not isinstance(images, Sequence):
        raise TypeError(
            "The 'images' parameter must be a list of images, a list of file paths or a "
            f"stack of images; got {type(images).__name__}."
        )
    if len(images) == 0:
        raise ValueError("The 'images' parameter must hold at least one image; got an empty list.")
    for i, item in enumerate(images):
        if not isinstance(item, (str, os.PathLike, np.ndarray)):
            raise TypeError(
                f"The 'images[{i}]' parameter must be an image array or a file path; got "
                f"{type(item).__name__}."
            )
    return list(images), "list"


