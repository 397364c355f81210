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
* :func:`steady_allocator` keeps large freed buffers in the process (glibc), so
  that a long CPU job reuses each forward pass's memory instead of faulting it
  in again (``skhyper train`` / ``predict`` call it; on workers:
  ``client.run(steady_allocator)``).

How :func:`predict_large` stays exact
-------------------------------------
Each output chunk is computed from a window of the image: the chunk plus the
receptive-field halo of the deepest layer and one stride more
(:func:`skhyper.features.receptive_field`), starting on a multiple of the
network's stride and with a length congruent to the image's modulo the stride
(as :func:`skhyper.features.tiled_maps` plans its tiles). The window's native maps then equal
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
default) 40 s and 2.7 GiB peak RSS for the whole process, 1536 33 s and 3.8
GiB, 2048 28 s and 4.4 GiB; ``model.predict`` on the numpy image (tiles of
768 with 480-pixel halos) 58 s and 4.2 GiB. Larger chunks waste less work
on halos; on a GPU use 2048 or more.

CPU workers
-----------
On a cluster every task sets ``torch.set_num_threads`` in its own thread:
``n_threads`` when given, else the worker host's cores divided by the threads
of all workers on that host (dask's nanny starts workers with
``OMP_NUM_THREADS=1``, so one worker alone on a 4-core machine would otherwise
use one core). A fitted model is safe to run from several threads at once (its
layers are captured per call), so worker threads share one copy of the model; on
CPU, torch already uses the cores within one forward pass, so one thread per worker
process and several processes usually serve best.

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

from ._collection import predict_collection
from ._common import METHODS as _METHODS
from ._common import SlowWorkerWarning
from ._large import predict_large
from ._memory import steady_allocator

METHODS: tuple[str, ...] = _METHODS
"""The model methods :func:`predict_collection` and :func:`predict_large` can apply."""

__all__ = ["predict_collection", "predict_large", "steady_allocator", "METHODS",
           "SlowWorkerWarning"]
