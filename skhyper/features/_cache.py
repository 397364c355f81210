"""An in-process cache of native-resolution maps, shared across sklearn clones.

GridSearchCV over layer choices fits many clones of one estimator on the same
images; without a cache every fit and every score recomputes the backbone. A
:class:`MapCache` passed as ``HypercolumnTransformer(cache=...)`` keeps the
native maps of every image it has seen, keyed by the backbone's weights, the
forward settings and the image content, so each image goes through the
backbone once per search.
"""

from __future__ import annotations

import hashlib
import numbers
import threading
from collections import OrderedDict
from typing import Any

import numpy as np
import torch

__all__ = ["MapCache", "backbone_fingerprint", "image_digest"]


def backbone_fingerprint(backbone: torch.nn.Module) -> str:
    """A digest of a backbone's class and weights (memoized on the module)."""
    memo = backbone.__dict__.get("_fingerprint")
    if memo is not None:
        return memo
    h = hashlib.blake2b(digest_size=16)
    h.update(type(backbone).__name__.encode())
    h.update(str(getattr(backbone, "name", "")).encode())
    for key, t in backbone.state_dict().items():
        h.update(key.encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    backbone.__dict__["_fingerprint"] = digest = h.hexdigest()
    return digest


def image_digest(image: np.ndarray) -> str:
    """A digest of an image's content, shape and dtype."""
    h = hashlib.blake2b(digest_size=16)
    h.update(str((image.shape, image.dtype.str)).encode())
    h.update(np.ascontiguousarray(image).data)
    return h.hexdigest()


class MapCache:
    """Least-recently-used cache of native maps, bounded in bytes.

    Pass one instance to ``HypercolumnTransformer(cache=...)``: sklearn's
    ``clone`` keeps the same instance (it is not copied), so every clone made
    by GridSearchCV or cross-validation shares it. On a miss the backbone
    computes the requested layers together with all its stages, so a search
    over subsets of stages needs a single pass per image. Maps are stored on
    the CPU. Pickling keeps the settings and drops the content. Process-based
    parallelism (``n_jobs > 1``) gives each worker its own copy.

    Parameters
    ----------
    max_bytes : int, default=2**31
        Memory budget for the stored maps (2 GiB); least recently used images
        are evicted first.

    Attributes
    ----------
    hits, misses : int
        Lookups that found / did not find an image's maps.
    n_forward_images : int
        Images that went through the backbone on behalf of the cache.
    nbytes : int
        Bytes held.

    Examples
    --------
    >>> from sklearn.base import clone
    >>> from skhyper import HypercolumnTransformer
    >>> cache = MapCache(max_bytes=2**28)
    >>> hc = HypercolumnTransformer(cache=cache)
    >>> clone(hc).cache is cache
    True
    """

    def __init__(self, max_bytes: int = 2**31) -> None:
        if isinstance(max_bytes, bool) or not isinstance(max_bytes, numbers.Integral) \
                or max_bytes < 0:
            raise TypeError(
                "The 'max_bytes' parameter of MapCache must be a non-negative int (bytes, e.g. "
                f"2**30 for 1 GiB). Got {max_bytes!r} instead."
            )
        self.max_bytes = int(max_bytes)
        self._store: OrderedDict[tuple, dict[str, torch.Tensor]] = OrderedDict()
        self._lock = threading.Lock()  # one model may be used from several threads
        self.nbytes = 0
        self.hits = self.misses = self.n_forward_images = 0

    def get(self, key: tuple, layers: list[str]) -> dict[str, torch.Tensor] | None:
        """The maps of ``layers`` for ``key``, or None if any is missing.

        A hit counts in ``hits`` and makes the entry the most recently used; a
        miss counts in ``misses``.

        Parameters
        ----------
        key : tuple
            What identifies the maps: the backbone's weights, the forward settings
            that change maps (precision, resizing, scale, intensities) and a digest
            of the image content.
        layers : list of str
            The layers wanted; all must be stored for a hit.

        Returns
        -------
        maps : dict of str to torch.Tensor or None
            ``{layer: map}`` on the CPU, in the order of ``layers``, or None.
        """
        with self._lock:
            entry = self._store.get(key)
            if entry is None or any(name not in entry for name in layers):
                self.misses += 1
                return None
            self._store.move_to_end(key)
            self.hits += 1
            return {name: entry[name] for name in layers}

    def put(self, key: tuple, maps: dict[str, torch.Tensor], *, forward: bool = False) -> None:
        """Store ``maps`` (copied to the CPU) under ``key``, evicting old entries.

        The maps join those already stored under ``key``; least recently used
        entries are evicted until ``nbytes`` fits ``max_bytes``. An entry larger
        than the whole budget is not stored.

        Parameters
        ----------
        key : tuple
            The key :meth:`get` looks the maps up by.
        maps : dict of str to torch.Tensor
            ``{layer: map}`` to store.
        forward : bool, default=False
            Whether the maps were just computed for the cache (counted in
            ``n_forward_images``).
        """
        copied = {name: t.detach().to("cpu", copy=True) for name, t in maps.items()}
        with self._lock:
            self.n_forward_images += bool(forward)
            entry = self._store.pop(key, {})
            self.nbytes -= sum(t.nbytes for t in entry.values())
            entry.update(copied)
            size = sum(t.nbytes for t in entry.values())
            if size > self.max_bytes:
                return
            self._store[key] = entry
            self.nbytes += size
            while self.nbytes > self.max_bytes:
                _, old = self._store.popitem(last=False)
                self.nbytes -= sum(t.nbytes for t in old.values())

    def clear(self) -> None:
        """Drop all maps and reset the counters."""
        with self._lock:
            self._store.clear()
            self.nbytes = 0
            self.hits = self.misses = self.n_forward_images = 0

    def __len__(self) -> int:
        return len(self._store)

    def __deepcopy__(self, memo: dict) -> MapCache:
        return self  # shared by sklearn clones, on purpose

    def __getstate__(self) -> dict[str, Any]:
        return {"max_bytes": self.max_bytes}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["max_bytes"])

    def __repr__(self) -> str:
        return f"MapCache(max_bytes={self.max_bytes})"
