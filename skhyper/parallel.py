"""Scale-out and huge images: many images on a Dask cluster, one huge image chunk by chunk.

Needs the optional extra ``pip install "skhyper[dask]"`` (``dask[array]`` and
``distributed``; ``zarr`` is optional).

* :func:`predict_collection` applies a fitted model (a
  :class:`~skhyper.HypercolumnSegmenter`, a
  :class:`~skhyper.HypercolumnTransformer` for ``transform_dense``, or anything
  with such methods taking a list of images) to a large collection of images:
  in-process, or on a ``dask.distributed`` cluster where the model is sent
  once to every worker (``client.scatter(model, broadcast=True)``) and the
  images stream through as tasks (arrays, file paths read on the workers, or a
  dask array stack). Results come back in order.
* :func:`predict_large` predicts one image too large for memory (a dask array,
  a zarr array or any sliceable array) chunk by chunk, as a lazy dask array
  equal to ``model.predict`` on the whole image.

How :func:`predict_large` stays exact
-------------------------------------
Each output chunk is computed from a window of the image: the chunk plus the
receptive-field halo of the deepest layer and one stride more
(:func:`skhyper.tiling.receptive_field`), starting on a multiple of the
network's stride and with a length congruent to the image's modulo the stride
(as :mod:`skhyper.tiling` plans its tiles). The window's native maps then equal
the whole image's maps over the chunk and one native cell around it. The
classifier is folded onto those maps (per-layer 1x1 heads) and the score maps
are upsampled with the *whole image's* bilinear weights (the scale of a map of
``h`` rows upsampled to ``H`` rows is ``h / H``, which no per-chunk upsample
reproduces unless ``H`` is a multiple of the stride), so every pixel gets the
score ``predict`` gives it, to float rounding (the chunks compute in float64).
A classifier that does not fold predicts on the hypercolumns of the chunk in
bands of ``chunk_pixels`` pixels.

Memory and time: one forward pass of a window at a time per process (see
"CPU workers"), plus the output. A window is ``chunks + 2 * (480 + 32)``
pixels wide for the default backbone, so the forward pass dominates: about
340 bytes per window pixel on CPU (3.2 GiB for a 3072 x 3072 window, on top
of 0.84 GiB for torch and the model). An 8192 x 8192 uint16 image from zarr
to zarr on 2 CPU cores (``benchmarks/bench_huge.py``): ``chunks=1024`` (the
default) 178 s and 2.9 GiB peak RSS for the whole process, 1536 119 s and 3.9
GiB, 2048 95 s and 4.4 GiB; ``model.predict`` on the numpy image (tiles of
768 with 480-pixel halos) 180 s and 3.5 GiB. Larger chunks waste less work
on halos; on a GPU use 2048 or more.

CPU workers
-----------
On a cluster every task sets ``torch.set_num_threads`` in its own thread:
``n_threads`` when given, else the worker host's cores divided by the threads
of all workers on that host (dask's nanny starts workers with
``OMP_NUM_THREADS=1``, so one worker alone on a 4-core machine would otherwise
use one core). One process runs one forward pass of a backbone at a time (its
layers are collected by hooks that threads would share), so on CPU prefer
worker processes with one thread each.

Dask's nanny also starts workers with ``MALLOC_TRIM_THRESHOLD_=65536``, with
which glibc maps and unmaps every large torch buffer: inference on 256 x 256
images ran 2x slower (18.7 vs 35.3 images/s on two 1-thread workers of a
2-core machine, ``benchmarks/bench_parallel.py``). Remove it
before starting CPU workers (a :class:`SlowWorkerWarning` says when it is
set)::

    import dask
    from distributed import LocalCluster

    env = dict(dask.config.get("distributed.nanny.pre-spawn-environ"))
    env.pop("MALLOC_TRIM_THRESHOLD_", None)
    with dask.config.set({"distributed.nanny.pre-spawn-environ": env}):
        cluster = LocalCluster(n_workers=4, threads_per_worker=1)

``OMP_WAIT_POLICY=PASSIVE`` in the environment of the process that starts a
``LocalCluster`` is inherited by its workers and helps when workers share
cores.

On a multi-GPU machine
----------------------
Use `dask-cuda <https://docs.rapids.ai/api/dask-cuda/stable/>`_: one worker per
GPU, each seeing its own GPU as ``cuda:0``::

    from dask_cuda import LocalCUDACluster
    from distributed import Client
    from skhyper.parallel import predict_collection

    with LocalCUDACluster() as cluster, Client(cluster) as client:
        labels = predict_collection(seg, paths, client=client, device="cuda",
                                    batch_size=16)

A model fitted with ``device="cuda"`` pickles with CPU tensors and goes back to
the GPU of each worker by itself; ``device="cuda"`` also moves a model fitted
on the CPU. Images are read on the workers (pass file paths), so only paths
and label maps cross the network.

Hyperparameter searches on a cluster
------------------------------------
scikit-learn parallelizes a search with joblib; the ``"dask"`` joblib backend
(registered by ``distributed``) runs its fits on the cluster::

    import joblib
    from distributed import Client
    from sklearn.model_selection import GridSearchCV

    client = Client("scheduler-address:8786")
    search = GridSearchCV(HypercolumnSegmenter(), {"hypercolumns__layers": [[3, 4], None]},
                          cv=3, n_jobs=-1)
    with joblib.parallel_backend("dask"):
        search.fit(images, masks)

A :class:`~skhyper.MapCache` is per process: each worker fills its own copy
(pickling sends its settings, never its maps).
"""

from __future__ import annotations

import copy
import operator
import os
import pickle
import threading
import uuid
import warnings
import weakref
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from itertools import islice
from numbers import Integral
from typing import Any

import numpy as np
import torch
from sklearn.utils.validation import check_is_fitted

from ._validation import check_images, resolve_device
from .estimators import HypercolumnTransformer
from .extraction import forward_maps, interp_weights, iter_maps
from .folding import project_maps
from .location import FoldedGrid, axis_locations
from .tiling import NotTileableError, receptive_field

__all__ = ["predict_collection", "predict_large", "METHODS", "SlowWorkerWarning"]

#: Methods :func:`predict_collection` and :func:`predict_large` can apply.
METHODS = ("predict", "predict_proba", "decision_function", "transform_dense")

_MOVE_LOCK = threading.Lock()
# The backbone collects its layers with forward hooks on shared modules, so two threads must
# not run the same backbone at once: one lock per backbone serializes its forward passes.
# (Other models are serialized too: their thread safety is unknown.)
_FORWARD_LOCKS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_ANY_MODEL_LOCK = threading.Lock()


def _forward_lock(model: Any) -> threading.Lock:
    hc = _hypercolumns_of(model)
    key = hc.backbone_ if hc is not None else model
    with _MOVE_LOCK:
        try:
            return _FORWARD_LOCKS.setdefault(key, threading.Lock())
        except TypeError:  # not weak-referenceable
            return _ANY_MODEL_LOCK


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
    if hc is model:
        return hc2
    out = _shallow(model)
    out.hypercolumns_ = hc2
    return out


def _to_device(model: Any, device: Any) -> Any:
    """Move a skhyper model's backbone to ``device`` in place (once; thread-safe)."""
    if device is None:
        return model
    hc = _hypercolumns_of(model)
    dev = resolve_device(device)
    if hc.device_ != dev:
        with _MOVE_LOCK:
            if hc.device_ != dev:
                hc.backbone_.to(dev)
                hc.device_ = dev
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


def _check_images(hc: HypercolumnTransformer, images: Any, param: str) -> list[np.ndarray]:
    """Images checked as the transformer checks them (channel strategy included)."""
    if hasattr(hc, "_check_images"):
        return hc._check_images(images, param=param)[0]
    return check_images(images, param=param, n_channels=hc.backbone_.in_chans)[0]


def _forward_kwargs(hc: HypercolumnTransformer) -> dict[str, Any]:
    """The transformer's forward settings for one window: no cache, no tiling, no bar."""
    kw = dict(hc._run_kwargs())
    if hasattr(hc, "_image_kwargs"):
        kw.update(hc._image_kwargs())
    kw.update(cache=None, tile_size=None, verbose=False)
    return kw


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


def _worker_facts() -> tuple[int, str | None]:
    return _n_cores(), os.environ.get("MALLOC_TRIM_THRESHOLD_")


def _cluster_threads(client: Any, n_threads: int | None, model: Any,
                     device: Any) -> int | dict[str, int]:
    """Torch threads per worker (the host's cores over the threads of its workers, unless
    ``n_threads``), warning when CPU workers run with a small ``MALLOC_TRIM_THRESHOLD_``."""
    facts = client.run(_worker_facts)
    hc = _hypercolumns_of(model)
    on_cpu = hc is not None and (torch.device(device).type if device is not None
                                 else hc.device_.type) == "cpu"
    trims = {str(v[1]) for v in facts.values() if v[1] is not None}
    small = sorted(v for v in trims if v.isdigit() and int(v) < 2**26)
    if on_cpu and small:
        warnings.warn(
            f"The Dask workers run with MALLOC_TRIM_THRESHOLD_={small[0]} (dask's nanny "
            "default), which makes glibc map and unmap every large torch buffer: CPU inference "
            "runs about 2x slower. Start the cluster without it: env = dict(dask.config.get("
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


_PIL_KEPT = {"1", "L", "RGB", "I", "F", "I;16", "I;16L", "I;16B"}


def _read_image(item: Any) -> np.ndarray:
    """An image array from an array or a file path (read with PIL, first frame)."""
    if not isinstance(item, (str, os.PathLike)):
        return item
    from PIL import Image

    with Image.open(item) as im:
        if im.mode not in _PIL_KEPT:
            im = im.convert("L" if im.mode == "LA" else "RGB")
        return np.asarray(im)


def _run_batch(model: Any, items: Any, method: str, threads: Any, device: Any) -> list:
    """Apply ``method`` to a batch of images (arrays or paths); the task run on workers."""
    with _torch_threads(_threads_here(threads)):
        model = _to_device(_live(model), device)
        images = [_read_image(x) for x in items]
        with _forward_lock(model):
            out = getattr(model, method)(images)
    return [np.asarray(o) for o in out]


def _run_stack(model: Any, stack: np.ndarray, method: str, threads: Any, device: Any,
               dtype: np.dtype) -> np.ndarray:
    out = _run_batch(model, list(np.asarray(stack)), method, threads, device)
    return np.stack(out).astype(dtype, copy=False)


def _is_dask_array(x: Any) -> bool:
    return type(x).__module__.startswith("dask.array") and hasattr(x, "dask")


def _check_collection(images: Any) -> tuple[Any, str]:
    """Validate the collection; return it and its kind ("list", "stack" or "dask")."""
    if _is_dask_array(images):
        if images.ndim not in (3, 4):
            raise ValueError(
                "The parameter `images` must be a stack (n_images, height, width[, channels]) "
                f"when it is a dask array; got shape {images.shape}."
            )
        if images.shape[0] == 0:
            raise ValueError(
                f"The parameter `images` must hold at least one image; got shape {images.shape}."
            )
        return images, "dask"
    if isinstance(images, np.ndarray):
        if images.ndim != 4:
            raise ValueError(
                "The parameter `images` must be a list of images, a list of file paths or a "
                "stack (n_images, height, width, channels); got an array of shape "
                f"{images.shape}. For one image call the model's method (or predict_large)."
            )
        if images.shape[0] == 0:
            raise ValueError(
                f"The parameter `images` must hold at least one image; got shape {images.shape}."
            )
        return list(images), "stack"
    if isinstance(images, (str, os.PathLike)) or not isinstance(images, Sequence):
        raise TypeError(
            "The parameter `images` must be a list of images, a list of file paths or a "
            f"stack of images; got {type(images).__name__}."
        )
    if len(images) == 0:
        raise ValueError("The parameter `images` must hold at least one image; got an empty list.")
    for i, item in enumerate(images):
        if not isinstance(item, (str, os.PathLike, np.ndarray)):
            raise TypeError(
                f"The parameter `images[{i}]` must be an image array or a file path; got "
                f"{type(item).__name__}."
            )
    return list(images), "list"


def predict_collection(
    model: Any,
    images: Any,
    *,
    method: str = "predict",
    client: Any = None,
    batch_size: int = 4,
    n_threads: int | None = None,
    device: Any = None,
    compute: bool = True,
) -> list[np.ndarray] | np.ndarray | Any:
    """Apply a fitted model to many images, in-process or on a Dask cluster.

    The model is pickled once and sent once to every worker
    (``client.scatter(..., broadcast=True)``, about 0.2 s per call for the
    default segmenter: pass a large collection in one call); batches of
    ``batch_size`` images stream through as tasks, at most two per worker
    thread in flight, and the results come back in the order of ``images``.
    The model travels without the contents of its :class:`~skhyper.MapCache`
    and runs without a cache (the images are new).

    Parameters
    ----------
    model : fitted estimator
        A :class:`~skhyper.HypercolumnSegmenter`, a
        :class:`~skhyper.HypercolumnTransformer` (``method="transform_dense"``)
        or any object whose ``method`` takes a list of images and returns one
        result per image.
    images : list of ndarray or of str / path, ndarray or dask array
        ``(height, width[, channels])`` images of any sizes, file paths (read
        with PIL on the workers: 8/16-bit grayscale and RGB are kept, other
        modes become RGB), a mix of both, a stack ``(n_images, height, width,
        channels)``, or a dask array stack ``(n_images, height, width[,
        channels])`` whose batches are computed on the workers.
    method : {"predict", "predict_proba", "decision_function", "transform_dense"}, \
default="predict"
    client : distributed.Client, default=None
        The cluster; None runs in this process (no dask needed).
    batch_size : int, default=4
        Images per task (the model batches equal-sized images in one forward
        pass).
    n_threads : int, default=None
        ``torch.set_num_threads`` inside each task. None: on a cluster, each
        worker host's cores divided by the threads of its workers; in-process,
        torch's current setting.
    device : str, default=None
        Move the model to this device before predicting (on each worker, or a
        copy in-process), e.g. ``"cuda"`` on a dask-cuda cluster. None keeps
        the fitted device (a CUDA-fitted model falls back to the CPU where there
        is no GPU). Needs a skhyper model.
    compute : bool, default=True
        False returns without waiting: a list of futures (with ``client``) or
        of ``dask.delayed`` objects (without), one per image, or a lazy dask
        array for a dask array stack.

    Returns
    -------
    list of ndarray, or ndarray
        One result per image, as ``getattr(model, method)(image)``; a stack
        ``(n_images, ...)`` when ``images`` is a stack (numpy or dask).

    See Also
    --------
    predict_large : one image too large for memory.

    Examples
    --------
    >>> import numpy as np
    >>> from skhyper import HypercolumnSegmenter, HypercolumnTransformer
    >>> from skhyper.parallel import predict_collection
    >>> rng = np.random.default_rng(0)
    >>> images = rng.random((6, 40, 52, 3)).astype(np.float32) * 0.3
    >>> masks = np.zeros((6, 40, 52), dtype=int)
    >>> masks[:, 10:30, 15:40] = 1
    >>> images[masks == 1] += 0.6
    >>> seg = HypercolumnSegmenter(
    ...     HypercolumnTransformer("resnet18", layers=["relu", "layer1"], weights=None,
    ...                            device="cpu"),
    ...     n_pixels_per_image=200, random_state=0,
    ... ).fit(images[:4], masks[:4])
    >>> labels = predict_collection(seg, list(images), batch_size=2)  # in-process
    >>> len(labels), labels[0].shape, all(np.array_equal(a, b)
    ...                                   for a, b in zip(labels, seg.predict(list(images))))
    (6, (40, 52), True)

    On a cluster (not run here)::

        from distributed import Client, LocalCluster
        with LocalCluster(n_workers=2, threads_per_worker=1) as cluster, \\
                Client(cluster) as client:
            labels = predict_collection(seg, paths, client=client)
    """
    owner = "predict_collection"
    _check_method(model, method, owner)
    _check_fitted(model)
    _check_positive(batch_size, "batch_size", owner)
    _check_positive(n_threads, "n_threads", owner, allow_none=True)
    if device is not None:
        if _hypercolumns_of(model) is None:
            raise ValueError(
                f"The 'device' parameter of {owner} needs a skhyper model (a fitted "
                f"HypercolumnSegmenter or HypercolumnTransformer); got {type(model).__name__}."
            )
        resolve_device(device)  # fail early on a bad name
    images, kind = _check_collection(images)
    n = images.shape[0] if kind == "dask" else len(images)
    spans = [(s, min(n, s + batch_size)) for s in range(0, n, batch_size)]
    model = _without_cache(model)
    if client is None and device is not None:
        model = _to_device(copy.deepcopy(model), device)
        device = None

    if client is None and compute:
        out: list[np.ndarray] = []
        for s, e in spans:
            batch = images[s:e].compute() if kind == "dask" else images[s:e]
            out.extend(_run_batch(model, batch, method, n_threads, None))
        return np.stack(out) if kind in ("stack", "dask") else out

    dask, da = _import_dask(f"{owner}(client=..., compute=False)")
    token = uuid.uuid4().hex[:12]
    threads: Any = n_threads
    model_ref = _model_ref(dask, model, client, token)
    if client is not None:
        threads = _cluster_threads(client, n_threads, model, device)

    if kind == "dask" and not compute:
        return _lazy_stack(dask, da, model, model_ref, images, spans, method, threads, device,
                           token)
    if client is None:  # compute=False, in-process: delayed objects
        per_image = []
        for b, (s, e) in enumerate(spans):
            batch = images[s:e]
            d = dask.delayed(_run_batch, pure=True)(
                model_ref, batch, method, threads, device,
                dask_key_name=f"skhyper-batch-{token}-{b}")
            per_image += [dask.delayed(operator.getitem, pure=True)(
                d, j, dask_key_name=f"skhyper-image-{token}-{s + j}") for j in range(e - s)]
        return per_image

    def submit(b: int) -> Any:
        s, e = spans[b]
        if kind == "dask":
            payload = client.compute(images[s:e])
        elif any(isinstance(x, np.ndarray) for x in images[s:e]):
            payload = client.scatter(images[s:e], hash=False)
        else:
            payload = images[s:e]
        return client.submit(_run_batch, model_ref, payload, method, threads, device,
                             key=f"skhyper-batch-{token}-{b}", pure=False)

    if not compute:
        futures = [submit(b) for b in range(len(spans))]
        return [client.submit(operator.getitem, f, j, key=f"skhyper-image-{token}-{s + j}",
                              pure=False)
                for f, (s, e) in zip(futures, spans) for j in range(e - s)]

    from distributed import as_completed

    results: list[list[np.ndarray] | None] = [None] * len(spans)
    window = 2 * max(1, sum(client.nthreads().values()))
    todo = iter(range(len(spans)))
    running = {}
    for b in islice(todo, window):
        f = submit(b)
        running[f.key] = (b, f)
    pending = as_completed([f for _, f in running.values()])
    try:
        for fut in pending:
            b, _ = running.pop(fut.key)
            results[b] = fut.result()
            nxt = next(todo, None)
            if nxt is not None:
                f = submit(nxt)
                running[f.key] = (nxt, f)
                pending.add(f)
    finally:
        if running:
            client.cancel([f for _, f in running.values()])
    out = [r for batch in results for r in batch]
    return np.stack(out) if kind in ("stack", "dask") else out


def _lazy_stack(dask: Any, da: Any, model: Any, model_ref: Any, stack: Any, spans: list,
                method: str, threads: Any, device: Any, token: str) -> Any:
    """A lazy dask array of the results of a dask array stack, one task per batch."""
    probe = np.asarray(stack[0, :64, :64].compute())
    res = np.asarray(getattr(_to_device(copy.deepcopy(model), device) if device else model,
                             method)([probe])[0])
    dtype = np.dtype(np.float64) if method == "decision_function" else res.dtype
    trail = res.shape[2:]
    _, H, W = stack.shape[:3]
    parts = []
    for b, (s, e) in enumerate(spans):
        d = dask.delayed(_run_stack, pure=True)(
            model_ref, stack[s:e], method, threads, device, dtype,
            dask_key_name=f"skhyper-batch-{token}-{b}")
        parts.append(da.from_delayed(d, shape=(e - s, H, W, *trail), dtype=dtype))
    return da.concatenate(parts, axis=0)


# ----------------------------------------------------------------------------- huge images


def _as_dask_image(da: Any, image: Any, chunks: tuple[int, int]) -> Any:
    shape = getattr(image, "shape", None)
    if shape is not None and (len(shape) not in (2, 3) or 0 in shape):
        raise ValueError(
            "The parameter `image` of predict_large must be one image (height, width[, "
            f"channels]); got shape {tuple(shape)}. For many images use predict_collection."
        )
    if _is_dask_array(image):
        arr = image
    elif isinstance(image, np.ndarray):
        arr = da.from_array(image, chunks=chunks + ((-1,) if image.ndim == 3 else ()))
    elif all(hasattr(image, a) for a in ("shape", "dtype", "ndim", "__getitem__")):
        own = getattr(image, "chunks", None)  # zarr, h5py: read chunk by chunk
        arr = da.from_array(image, chunks=own if own else "auto")
    else:
        raise TypeError(
            "The parameter `image` of predict_large must be a dask array, a zarr array or a "
            f"numpy array (height, width[, channels]); got {type(image).__name__}."
        )
    kind = np.dtype(arr.dtype).kind
    if kind not in "biuf":
        raise TypeError(
            f"The parameter `image` must hold numbers (bool, integer or float pixels); got dtype "
            f"{arr.dtype}."
        )
    return arr


def _window(c0: int, c1: int, n: int, ext: int, stride: int) -> tuple[int, int]:
    """Window of core ``[c0, c1)``: ``ext`` more on each side, congruent to ``n`` mod stride."""
    w0 = max(0, c0 - ext)
    w1 = c1 + ext
    w1 = n if w1 >= n else min(n, w1 + (n - w1) % stride)
    return w0, w1


def _native_sizes(hc: HypercolumnTransformer, shape: tuple[int, int],
                  chunks: tuple[int, int], ext: int, stride: int) -> dict[str, tuple[int, int]]:
    """Each layer's map size for the whole image, from thin probes of the last windows."""
    bb = hc.backbone_
    layers = hc._layer_names()
    red = {d["name"]: max(1, round(d["reduction"])) for d in hc.feature_info_}
    thin = max(64, 2 * stride)
    sizes: dict[str, list[int]] = {name: [0, 0] for name in layers}
    for axis, (n, c) in enumerate(zip(shape, chunks)):
        w0, _ = _window((n - 1) // c * c, n, n, ext, stride)
        probe = (n - w0, thin) if axis == 0 else (thin, n - w0)
        x = torch.zeros((1, bb.in_chans, *probe), device=hc.device_)
        maps = forward_maps(bb, x, layers, dtype=hc.dtype)
        for name, m in maps.items():
            sizes[name][axis] = w0 // red[name] + m.shape[2 + axis]
    return {k: (v[0], v[1]) for k, v in sizes.items()}


def _axis(start: int, stop: int, n_native: int, n: int, offset: int,
          n_local: int) -> tuple[torch.Tensor, ...]:
    """Bilinear neighbours and weights of pixels ``start..stop-1`` of an axis of ``n``
    pixels whose map has ``n_native`` cells, as indices into a window map that starts at
    native cell ``offset`` and has ``n_local`` cells."""
    i0, i1, w0, w1 = interp_weights(torch.arange(start, stop), n_native, n)
    i0, i1 = i0 - offset, i1 - offset
    if int(i0.min()) < 0 or int(i1.max()) >= n_local:  # pragma: no cover - a bug if reached
        raise RuntimeError("predict_large: a window does not cover its chunk's neighbours.")
    return i0, i1, w0.double(), w1.double()


def _upsample(m: torch.Tensor, rows: tuple, cols: tuple, dtype: torch.dtype) -> torch.Tensor:
    """``(c, ny, nx)``: a window map ``(c, h, w)`` read at pixels, bilinearly, separably."""
    i0, i1, a0, a1 = rows
    j0, j1, b0, b1 = cols
    m = m.to(dtype)
    t = m[:, i0, :] * a0.to(dtype)[:, None] + m[:, i1, :] * a1.to(dtype)[:, None]
    return t[:, :, j0] * b0.to(dtype) + t[:, :, j1] * b1.to(dtype)


def _large_mode(model: Any, hc: HypercolumnTransformer, method: str) -> str:
    if method == "transform_dense":
        return "features"
    head = getattr(model, "folded_", None)
    if head is None or isinstance(head, FoldedGrid):
        return "classifier"
    if method == "predict_proba" and head.link is None:
        return "classifier"
    return "folded"


def _large_meta(model: Any, hc: HypercolumnTransformer, method: str,
                mode: str) -> tuple[np.dtype, tuple[int, ...]]:
    if mode == "features":
        return np.dtype(np.float32), (hc.n_features_out_,)
    if mode == "folded":
        head = model.folded_
        if method == "predict":
            return np.asarray(head.classes).dtype, ()
        if method == "predict_proba":
            return np.dtype(np.float32), (len(head.classes),)
        return np.dtype(np.float64), (() if head.n_outputs == 1 else (head.n_outputs,))
    res = np.asarray(getattr(model.classifier_, method)(
        np.zeros((1, hc.n_features_out_), dtype=np.float32)))
    dtype = np.dtype(np.float64) if method == "decision_function" else res.dtype
    return dtype, res.shape[1:]


def _predict_chunk(model: Any, window: np.ndarray, spec: dict) -> np.ndarray:
    """One output chunk from its window: the task of :func:`predict_large`."""
    with _torch_threads(_threads_here(spec["threads"])):
        return _chunk(_live(model), np.asarray(window), spec)


def _chunk(model: Any, window: np.ndarray, spec: dict) -> np.ndarray:
    hc = _hypercolumns_of(model)
    H, W = spec["shape"]
    r0, r1, c0, c1 = spec["core"]
    w0, v0 = spec["origin"]
    mode, method = spec["mode"], spec["method"]
    layers = hc._layer_names()
    red = {d["name"]: max(1, round(d["reduction"])) for d in hc.feature_info_}
    checked = _check_images(hc, window, "image")
    fw = _forward_kwargs(hc)
    dev = fw["device"]
    project = None
    head = getattr(model, "folded_", None)
    if mode == "folded":
        by_name = {name: torch.from_numpy(np.asarray(b, dtype=np.float64)).to(dev)
                   for name, b in zip(layers, head.blocks)}

        def project(maps: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
            # 1x1 heads in float64 at native resolution, as folded_predict
            return dict(zip(maps, project_maps(maps, [by_name[name] for name in maps])))

    with _forward_lock(model):
        _, maps = next(iter_maps(hc.backbone_, checked, layers, project=project, **fw))
    ny, nx = r1 - r0, c1 - c0
    col_w = {}
    for name in layers:
        r = red[name]
        col_w[name] = _axis(c0, c1, spec["native"][name][1], W, v0 // r, maps[name].shape[2])

    def rows_of(name: str, a: int, b: int) -> tuple:
        r = red[name]
        return _axis(a, b, spec["native"][name][0], H, w0 // r, maps[name].shape[1])

    if mode == "folded":
        total = torch.from_numpy(np.asarray(head.bias, dtype=np.float64)).to(dev)
        total = total.reshape(-1, 1, 1).expand(-1, ny, nx).clone()
        for name in layers:
            total += _upsample(maps[name], rows_of(name, r0, r1), col_w[name], torch.float64)
        if head.location is not None:
            loc = torch.from_numpy(np.asarray(head.location, dtype=np.float64)).to(dev)
            u = torch.from_numpy(axis_locations(W, 0.0, float(W))[c0:c1]).to(dev)
            v = torch.from_numpy(axis_locations(H, 0.0, float(H))[r0:r1]).to(dev)
            total += loc[0][:, None, None] * u + loc[1][:, None, None] * v[:, None]
        if method == "predict":
            return np.asarray(head.classes)[head.labels(total).cpu().numpy()]
        if method == "predict_proba":
            values = head.proba(total).float().cpu().numpy()
        else:
            values = total.cpu().numpy()
        return values[0] if values.shape[0] == 1 else np.moveaxis(values, 0, -1)

    # hypercolumns of the chunk in bands of rows, for transform_dense or a classifier
    dtype, trail = spec["dtype"], spec["trail"]
    out = np.empty((ny, nx, *trail), dtype=dtype)
    chunk_pixels = getattr(model, "chunk_pixels", 65536)
    band = max(1, chunk_pixels // nx)
    u = axis_locations(W, 0.0, float(W))[c0:c1].astype(np.float32)
    v = axis_locations(H, 0.0, float(H))[r0:r1].astype(np.float32)
    for a in range(r0, r1, band):
        b = min(r1, a + band)
        parts = [_upsample(maps[name], rows_of(name, a, b), col_w[name], torch.float32)
                 for name in layers]
        feats = torch.cat(parts, 0).permute(1, 2, 0).cpu().numpy()  # (rows, nx, D)
        if hc.append_location:
            loc = np.empty((b - a, nx, 2), dtype=np.float32)
            loc[..., 0] = u[None, :]
            loc[..., 1] = v[a - r0 : b - r0, None]
            feats = np.concatenate([feats, loc], axis=-1)
        if mode == "features":
            out[a - r0 : b - r0] = feats
        else:
            values = np.asarray(getattr(model.classifier_, method)(
                feats.reshape((b - a) * nx, -1)))
            out[a - r0 : b - r0] = values.reshape(b - a, nx, *trail)
    return out


def predict_large(
    model: Any,
    image: Any,
    *,
    method: str = "predict",
    chunks: int | tuple[int, int] = 1024,
    client: Any = None,
    n_threads: int | None = None,
) -> Any:
    """Predict one huge image chunk by chunk, as a lazy dask array.

    Each ``chunks``-sized block of the output is computed by one task from a
    window of the image (the block plus the receptive-field halo), and equals
    ``getattr(model, method)(image)`` on the whole image to float rounding
    (see the module's notes). Nothing runs until the result is computed or
    stored, so the image can live in a zarr store and the labels can go to
    one (``.to_zarr(...)``) without either ever being in memory.

    Parameters
    ----------
    model : HypercolumnSegmenter or HypercolumnTransformer
        Fitted (a transformer for ``method="transform_dense"``). Image-level
        layers (global pooling, fully connected) and ``image_size`` cannot be
        chunked; neither can a per-image ``intensity_range=("percentile",
        ...)``.
    image : dask array, zarr array or ndarray of shape (height, width[, channels])
        Read window by window (a numpy array is wrapped with
        ``dask.array.from_array``).
    method : {"predict", "predict_proba", "decision_function", "transform_dense"}, \
default="predict"
    chunks : int or (int, int), default=1024
        Output block size in pixels, rounded down to a multiple of the
        network's stride. Each task holds one forward pass of ``chunks`` plus
        twice the halo (480 + 32 pixels for the default backbone): larger
        blocks waste less work on halos and use more memory (8192 x 8192 on
        2 CPU cores: 1024 takes 178 s and 2.9 GiB for the whole process, 2048
        95 s and 4.4 GiB).
    client : distributed.Client, default=None
        Scatter the model to every worker of this cluster once (else the
        model is one key of the graph). Compute the result with the same
        client.
    n_threads : int, default=None
        ``torch.set_num_threads`` inside each task; None: as in
        :func:`predict_collection`.

    Returns
    -------
    dask.array.Array
        ``(height, width)`` labels (the classes' dtype), ``(height, width,
        n_classes)`` float32 probabilities, float64 scores (``(height, width)``
        for one output), or ``(height, width, n_features)`` float32
        hypercolumns, chunked by ``chunks``.

    See Also
    --------
    predict_collection : many images.
    skhyper.tiling : the same windows for the forward pass of one image.

    Examples
    --------
    >>> import numpy as np
    >>> from skhyper import HypercolumnSegmenter, HypercolumnTransformer
    >>> from skhyper.parallel import predict_large
    >>> rng = np.random.default_rng(0)
    >>> images = rng.random((4, 48, 64, 3)).astype(np.float32) * 0.3
    >>> masks = np.zeros((4, 48, 64), dtype=np.uint8)
    >>> masks[:, 10:30, 15:40] = 1
    >>> images[masks == 1] += 0.6
    >>> seg = HypercolumnSegmenter(
    ...     HypercolumnTransformer("resnet18", layers=["relu", "layer1"], weights=None,
    ...                            device="cpu"),
    ...     n_pixels_per_image=200, random_state=0,
    ... ).fit(images, masks)
    >>> big = np.tile(images[0], (5, 4, 1))          # 240 x 256, in 96-pixel blocks
    >>> labels = predict_large(seg, big, chunks=96)
    >>> labels.shape, labels.chunks
    ((240, 256), ((96, 96, 48), (96, 96, 64)))
    >>> bool((labels.compute() == seg.predict(big)).all())
    True
    """
    owner = "predict_large"
    dask, da = _import_dask(owner)
    _check_method(model, method, owner)
    _check_fitted(model)
    _check_positive(n_threads, "n_threads", owner, allow_none=True)
    hc = _hypercolumns_of(model)
    if hc is None:
        raise TypeError(
            f"{owner} needs a fitted HypercolumnSegmenter or HypercolumnTransformer (it computes "
            f"the folded scores window by window); got {type(model).__name__}. For other "
            "models use predict_collection on tiles."
        )
    if hc.image_size is not None:
        raise ValueError(
            f"{owner} cannot chunk a model that resizes images (image_size={hc.image_size}): "
            "resize the image first and use a model with image_size=None."
        )
    ir = getattr(hc, "intensity_range", None)
    if isinstance(ir, (tuple, list)) and len(ir) and ir[0] == "percentile":
        raise ValueError(
            f"{owner} cannot reproduce intensity_range={tuple(ir)!r}: percentiles are taken per "
            "image, and a chunk's differ from the whole image's. Use a model with a fixed "
            "intensity_range=(low, high)."
        )
    pair = (chunks, chunks) if isinstance(chunks, Integral) else tuple(chunks)
    if len(pair) != 2 or any(isinstance(c, bool) or not isinstance(c, Integral) or c < 1
                             for c in pair):
        raise ValueError(
            f"The 'chunks' parameter of {owner} must be a positive int or a pair of them. Got "
            f"{chunks!r} instead."
        )
    layers = hc._layer_names()
    try:
        halo, stride = receptive_field(hc.backbone_, layers)
    except NotTileableError as err:
        raise ValueError(
            f"{owner} cannot chunk layers {layers}: {err} Predict the whole image instead."
        ) from err
    ext = halo + stride
    ch, cw = (max(stride, c // stride * stride) for c in pair)
    arr = _as_dask_image(da, image, (ch, cw))
    H, W = arr.shape[:2]
    n_chans = arr.shape[2] if arr.ndim == 3 else 1
    _check_images(hc, np.zeros((2, 2, n_chans), dtype=arr.dtype), "image")  # channel count
    mode = _large_mode(model, hc, method)
    dtype, trail = _large_meta(model, hc, method, mode)
    native = _native_sizes(hc, (H, W), (ch, cw), ext, stride)

    model = _without_cache(model)
    token = uuid.uuid4().hex[:12]
    threads: Any = n_threads
    model_ref = _model_ref(dask, model, client, token)
    if client is not None:
        threads = _cluster_threads(client, n_threads, model, None)
    base = {"shape": (H, W), "native": native, "mode": mode, "method": method,
            "dtype": dtype, "trail": trail, "threads": threads}
    rows = []
    for i, r0 in enumerate(range(0, H, ch)):
        r1 = min(H, r0 + ch)
        w0, w1 = _window(r0, r1, H, ext, stride)
        row = []
        for j, c0 in enumerate(range(0, W, cw)):
            c1 = min(W, c0 + cw)
            v0, v1 = _window(c0, c1, W, ext, stride)
            spec = {**base, "core": (r0, r1, c0, c1), "origin": (w0, v0)}
            task = dask.delayed(_predict_chunk, pure=True)(
                model_ref, arr[w0:w1, v0:v1], spec,
                dask_key_name=f"skhyper-large-{token}-{i}-{j}")
            row.append(da.from_delayed(task, shape=(r1 - r0, c1 - c0, *trail), dtype=dtype))
        rows.append(da.concatenate(row, axis=1) if len(row) > 1 else row[0])
    return da.concatenate(rows, axis=0) if len(rows) > 1 else rows[0]

