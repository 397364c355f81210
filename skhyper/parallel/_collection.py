"""Many images on a Dask cluster: :func:`predict_collection`."""

from __future__ import annotations

import copy
import operator
import uuid
import warnings
from itertools import islice
from typing import Any

import numpy as np

from .._params import resolve_device
from ..exceptions import CollectionError
from ._common import (
    Failed,
    _check_collection,
    _check_fitted,
    _check_method,
    _check_positive,
    _cluster_threads,
    _hypercolumns_of,
    _import_dask,
    _model_ref,
    _run_batch,
    _run_stack,
    _to_device,
    _without_cache,
)


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
    errors: str = "raise",
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
        on the workers by :func:`skhyper.read_image`, with its axis policy: a
        multi-page file is a stack of planes, each predicted), a mix of both, a
        stack ``(n_images, height, width, channels)``, or a dask array stack
        ``(n_images, height, width[, channels])`` whose batches are computed on
        the workers.
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
    errors : {"raise", "warn"}, default="raise"
        What happens when some images fail (an unreadable file, a wrong shape):
        every other image is still predicted (a failing batch is retried image
        by image), then ``"raise"`` raises a
        :class:`~skhyper.exceptions.CollectionError` naming the failed images
        (index, file, error), whose ``results`` holds all results with None for
        those; ``"warn"`` returns that list with a warning naming them. If every
        image of the first batch fails, nothing more is tried (the error is not
        the images'). With ``compute=False`` the first error is raised when the
        result is computed.

    Returns
    -------
    list of ndarray, or ndarray
        One result per image, as ``getattr(model, method)(image)``; a stack
        ``(n_images, ...)`` when ``images`` is a stack (numpy or dask) and
        every image succeeded. A file holding a stack of planes gives the
        stack of their results, plane axes first (e.g. ``(Z, height, width)``
        labels for a z-stack: ``read_image(path).stack(results)``).

    Raises
    ------
    CollectionError
        Some images failed and ``errors="raise"``.

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
    _check_arguments(model, method, batch_size, n_threads, errors, device)
    images, kind = _check_collection(images)
    n = images.shape[0] if kind == "dask" else len(images)
    spans = [(s, min(n, s + batch_size)) for s in range(0, n, batch_size)]
    model = _without_cache(model)
    if client is None and device is not None:
        model = _to_device(copy.deepcopy(model), device)
        device = None

    if client is None and compute:
        out: list = []
        for s, e in spans:
            batch = images[s:e].compute() if kind == "dask" else images[s:e]
            out.extend(_run_batch(model, batch, method, n_threads, None, True))
            _stop_if_systematic(out, spans, owner)
        return _finish(out, kind, errors, owner)

    dask, da = _import_dask(f"{owner}(client=..., compute=False)")
    token = uuid.uuid4().hex[:12]
    threads: Any = n_threads
    model_ref = _model_ref(dask, model, client, token)
    if client is not None:
        threads = _cluster_threads(client, n_threads, model, device)
    task = (model_ref, method, threads, device, token)
    if kind == "dask" and not compute:
        return _lazy_stack(dask, da, model, images, spans, task)
    if client is None:  # compute=False, in-process: delayed objects
        return _delayed(dask, images, spans, task)
    submit = _submitter(client, images, kind, spans, task, compute)
    if not compute:
        futures = [submit(b) for b in range(len(spans))]
        return [client.submit(operator.getitem, f, j, key=f"skhyper-image-{token}-{s + j}",
                              pure=False)
                for f, (s, e) in zip(futures, spans) for j in range(e - s)]
    results = _on_cluster(client, submit, spans, owner)
    return _finish([r for batch in results for r in batch], kind, errors, owner)


def _check_arguments(model: Any, method: Any, batch_size: Any, n_threads: Any, errors: Any,
                     device: Any) -> None:
    """The checks of :func:`predict_collection`'s arguments other than ``images``."""
    owner = "predict_collection"
    _check_method(model, method, owner)
    _check_fitted(model)
    _check_positive(batch_size, "batch_size", owner)
    _check_positive(n_threads, "n_threads", owner, allow_none=True)
    if _hypercolumns_of(model) is None and hasattr(model, "n_features_in_"):
        raise ValueError(
            f"The 'model' parameter of {owner} must be a model of images (a fitted skhyper "
            f"estimator, or an object whose '{method}' takes a list of images); got "
            f"{type(model).__name__}, fitted on feature tables (n_features_in_="
            f"{model.n_features_in_}). Wrap it: HypercolumnSegmenter(classifier=...)."
        )
    if not isinstance(errors, str) or errors not in ("raise", "warn"):
        raise ValueError(
            f"The 'errors' parameter of {owner} must be 'raise' or 'warn'; got {errors!r}."
        )
    if device is not None:
        if _hypercolumns_of(model) is None:
            raise ValueError(
                f"The 'device' parameter of {owner} needs a skhyper model (a fitted "
                f"HypercolumnSegmenter or HypercolumnTransformer); got {type(model).__name__}."
            )
        resolve_device(device)  # fail early on a bad name


def _delayed(dask: Any, images: Any, spans: list, task: tuple) -> list:
    """One ``dask.delayed`` per image, one task per batch (in-process, ``compute=False``)."""
    model_ref, method, threads, device, token = task
    per_image = []
    for b, (s, e) in enumerate(spans):
        d = dask.delayed(_run_batch, pure=True)(
            model_ref, images[s:e], method, threads, device,
            dask_key_name=f"skhyper-batch-{token}-{b}")
        per_image += [dask.delayed(operator.getitem, pure=True)(
            d, j, dask_key_name=f"skhyper-image-{token}-{s + j}") for j in range(e - s)]
    return per_image


def _submitter(client: Any, images: Any, kind: str, spans: list, task: tuple,
               compute: bool) -> Any:
    """``submit(b)``: batch ``b`` as a task on the cluster (arrays scattered, paths read by
    the workers)."""
    model_ref, method, threads, device, token = task

    def submit(b: int) -> Any:
        s, e = spans[b]
        if kind == "dask":
            payload = client.compute(images[s:e])
        elif any(isinstance(x, np.ndarray) for x in images[s:e]):
            payload = client.scatter(images[s:e], hash=False)
        else:
            payload = images[s:e]
        return client.submit(_run_batch, model_ref, payload, method, threads, device, compute,
                             key=f"skhyper-batch-{token}-{b}", pure=False)

    return submit


def _on_cluster(client: Any, submit: Any, spans: list, owner: str) -> list:
    """Every batch's results, at most two tasks per worker thread in flight."""
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
            if b == 0:
                _stop_if_systematic(results[0], spans, owner)
            nxt = next(todo, None)
            if nxt is not None:
                f = submit(nxt)
                running[f.key] = (nxt, f)
                pending.add(f)
    finally:
        if running:
            client.cancel([f for _, f in running.values()])
    return results


def _stop_if_systematic(first: list, spans: list, owner: str) -> None:
    """Every image of the first batch failed: stop (the error is not the images')."""
    if len(spans) > 1 and len(first) == spans[0][1] and all(isinstance(r, Failed) for r in first):
        raise CollectionError(
            f"{owner}: every image of the first batch failed ({first[0].error}), so the "
            "others were not tried: the model or the method, not the images, is likely at "
            "fault.",
            results=[None] * spans[-1][1],
            failures={i: repr(r) for i, r in enumerate(first)},
        )


def _finish(out: list, kind: str, errors: str, owner: str) -> Any:
    failed = {i: repr(r) for i, r in enumerate(out) if isinstance(r, Failed)}
    if not failed:
        return np.stack(out) if kind in ("stack", "dask") else out
    results = [None if isinstance(r, Failed) else r for r in out]
    shown = "; ".join(f"image {i}: {msg}" for i, msg in list(failed.items())[:5])
    more = f" and {len(failed) - 5} more" if len(failed) > 5 else ""
    head = f"{owner}: {len(failed)} of {len(out)} images failed ({shown}{more})."
    if errors == "warn":
        warnings.warn(f"{head} They are None in the returned list.", UserWarning, stacklevel=3)
        return results
    raise CollectionError(
        f"{head} The other results are kept: catch the error and read its 'results' (None "
        "for the failed images), or pass errors='warn' to get them returned.",
        results=results,
        failures=failed,
    )


def _lazy_stack(dask: Any, da: Any, model: Any, stack: Any, spans: list, task: tuple) -> Any:
    """A lazy dask array of the results of a dask array stack, one task per batch."""
    model_ref, method, threads, device, token = task
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


