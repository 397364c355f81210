"""Model files without pickle: :func:`save` and :func:`load`.

A file is a zip archive of three members, none of which runs code when read:

* ``config.json`` -- the format, the skhyper version and the versions of torch,
  scikit-learn and numpy, the segmenter's parameters and those of its
  :class:`~skhyper.HypercolumnTransformer` (backbone name, weights source, layers, scales,
  channel strategy, intensity range, ...), the fitted channel count and classes;
* ``backbone.safetensors`` -- the fitted backbone's tensors (``safetensors``: raw tensors and
  a JSON header, no code);
* ``classifier.skops`` -- the fitted scikit-learn classifier in ``skops``' format, loaded with
  a list of trusted types: scikit-learn's and skhyper's estimators, numpy and builtin values.
  Any other type (a function, a class from elsewhere) is refused by name unless the caller
  passes it in ``trusted``.

Loading rebuilds the backbone from its name with random weights (no download) and loads the
saved tensors into it; a user-defined :class:`torch.nn.Module` backbone cannot be rebuilt
from a name, so it is passed to :func:`load` (``backbone=MyNet()``). A file written by
another skhyper version loads with an
:class:`~skhyper.exceptions.InconsistentVersionWarning`. Pickles (``joblib.dump``) keep
working as before.
"""

from __future__ import annotations

import importlib
import json
import os
import warnings
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.base import clone
from sklearn.utils.validation import check_is_fitted

from .._paths import check_output_path
from .._version import __version__
from ..estimators import HypercolumnSegmenter, HypercolumnTransformer
from ..exceptions import InconsistentVersionWarning
from ..heads import fold_head

__all__ = ["FORMAT", "TRUSTED_PREFIXES", "load", "save"]

FORMAT = "skhyper.model/1"
# packages whose classes (not functions) a classifier file may hold without the caller's say-so
TRUSTED_PREFIXES = ("sklearn.", "skhyper.", "numpy.", "builtins.", "scipy.sparse.")
_UNSAVED = ("cache",)  # run-time helpers that are not part of a model (a MapCache)


def _jsonable(value: Any) -> Any:
    """Parameters as JSON (tuples become lists; numpy scalars become numbers)."""
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    raise TypeError(type(value).__name__)


def _params(est: Any, skip: tuple[str, ...] = ()) -> dict[str, Any]:
    out = {}
    for name, value in est.get_params(deep=False).items():
        if name in skip or name in _UNSAVED:
            continue
        if name == "random_state" and not (value is None or isinstance(value, int)):
            value = None  # a RandomState instance: only its seed would be meaningful
        if name == "device" and isinstance(value, torch.device):
            value = str(value)
        out[name] = _jsonable(value)
    return out


def save(model: HypercolumnSegmenter, path: str | os.PathLike, *,
         metadata: dict[str, Any] | None = None) -> Path:
    """Save a fitted segmenter to a file that loads without pickle (see :func:`load`).

    Parameters
    ----------
    model : HypercolumnSegmenter
        Fitted. Its backbone may be a name (rebuilt on load) or a module (passed to
        :func:`load` again).
    path : str or path-like
        The file to write (conventionally ``.skhyper``).
    metadata : dict, default=None
        Display information that travels with the model and does not change its predictions,
        stored as JSON in the file's config and given back by :func:`load` as the loaded
        model's ``metadata_``. Keys are strings; values are numbers, strings, booleans, None,
        lists and dicts of these. Keys skhyper's tools read: ``"class_names"`` (a dict from
        class label to name), ``"class_colors"`` (a dict from class label to a colour, e.g.
        ``"#00ffff"``) and ``"n_image_channels"`` (the channel count of the training images).

    Returns
    -------
    path : Path
        The file written.

    See Also
    --------
    load : Load the file again.

    Examples
    --------
    >>> import numpy as np, os, tempfile
    >>> import skhyper
    >>> from skhyper import HypercolumnSegmenter, HypercolumnTransformer
    >>> rng = np.random.default_rng(0)
    >>> images = rng.random((2, 40, 52, 3)).astype(np.float32)
    >>> masks = (images[..., 0] > 0.5).astype(int)
    >>> seg = HypercolumnSegmenter(HypercolumnTransformer(
    ...     "resnet18", layers=["relu"], weights=None, device="cpu"),
    ...     n_pixels_per_image=200, random_state=0).fit(images, masks)
    >>> path = skhyper.save(seg, os.path.join(tempfile.mkdtemp(), "seg.skhyper"))
    >>> again = skhyper.load(path)
    >>> bool((again.predict(images) == seg.predict(images)).all())
    True
    >>> path = skhyper.save(seg, path, metadata={"class_names": {"1": "cell"}})
    >>> skhyper.load(path).metadata_
    {'class_names': {'1': 'cell'}}
    """
    import safetensors.torch
    import sklearn
    import skops.io

    if not isinstance(model, HypercolumnSegmenter):
        raise TypeError(
            "The 'model' parameter must be a fitted skhyper.HypercolumnSegmenter; got "
            f"{type(model).__name__}."
        )
    check_is_fitted(model)
    path = check_output_path(path, param="path")
    hc = model.hypercolumns_
    engine = hc.engine_
    module_backbone = not isinstance(hc.backbone, str)
    try:
        seg_params = _params(model, skip=("hypercolumns", "classifier"))
        hc_params = _params(hc, skip=("backbone",) if module_backbone else ())
    except TypeError as err:
        raise ValueError(
            f"The 'model' parameter has a parameter of type {err} that a model file cannot "
            "hold (numbers, strings, lists and None only)."
        ) from None
    config = {
        "format": FORMAT,
        "skhyper_version": __version__,
        "versions": {"torch": torch.__version__, "scikit-learn": sklearn.__version__,
                     "numpy": np.__version__, "skops": skops.__version__},
        "estimator": "HypercolumnSegmenter",
        "params": seg_params,
        "hypercolumns": hc_params,
        "backbone_module": type(hc.backbone).__name__ if module_backbone else None,
        "n_channels": int(engine.n_channels),
        "fitted_scales": None if engine.scales is None else [float(v) for v in engine.scales],
        "classes": _jsonable(list(model.classes_)),
        "classifier": type(model.classifier_).__name__,
        "defaults": [k for k in ("hypercolumns", "classifier") if getattr(model, k) is None],
        "metadata": _checked_metadata(metadata),
    }
    state = {k: v.detach().cpu().contiguous() for k, v in engine.backbone.state_dict().items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("config.json", json.dumps(config, indent=1))
        zf.writestr("backbone.safetensors", safetensors.torch.save(_unshared(state)))
        zf.writestr("classifier.skops", skops.io.dumps(model.classifier_))
    return Path(path)


def _checked_metadata(metadata: dict[str, Any] | None) -> dict[str, Any]:
    """``metadata`` as JSON (dict keys as strings), or a ValueError naming what to change."""
    if metadata is None:
        return {}
    if not isinstance(metadata, dict):
        raise TypeError(f"The 'metadata' parameter must be a dict or None; got "
                        f"{type(metadata).__name__}.")
    try:
        return json.loads(json.dumps(metadata, default=_json_default))
    except (TypeError, ValueError) as err:
        raise ValueError(
            f"The 'metadata' parameter holds a value a model file cannot store ({err}): use "
            "numbers, strings, booleans, None, lists and dicts."
        ) from None


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON")


def _unshared(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """safetensors refuses tensors that share memory: give each its own copy."""
    seen: set[int] = set()
    out = {}
    for k, v in state.items():
        ptr = v.untyped_storage().data_ptr() if v.numel() else -1
        out[k] = v.clone() if ptr in seen else v
        seen.add(ptr)
    return out


def _is_trusted_class(name: str) -> bool:
    """A class (never a function) from scikit-learn, skhyper, numpy, scipy.sparse or builtins.

    Only names under those packages are resolved (importing one of their modules), so no
    other module is ever imported.
    """
    if not name.startswith(TRUSTED_PREFIXES):
        return False
    parts = name.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        try:
            obj: Any = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        try:
            for attr in parts[cut:]:
                obj = getattr(obj, attr)
        except AttributeError:
            return False
        return isinstance(obj, type)
    return False


def _untrusted(names: list[str], trusted: list[str]) -> list[str]:
    return [n for n in names if n not in trusted and not _is_trusted_class(n)]


def load(path: str | os.PathLike, *, backbone: torch.nn.Module | None = None,
         device: str | None = None, trusted: list[str] | None = None) -> HypercolumnSegmenter:
    """Load a segmenter written by :func:`save`; nothing in the file is unpickled or run.

    Parameters
    ----------
    path : str or path-like
        A file written by :func:`save`.
    backbone : torch.nn.Module, default=None
        Needed when the model was fitted with a user-defined module as its backbone (the
        file holds its tensors, not its code): the same architecture, e.g. ``MyNet()``.
    device : {"auto", "cpu", "cuda"}, default=None
        Where the model runs; None keeps the saved ``device`` parameter.
    trusted : list of str, default=None
        Further types (fully qualified names) the classifier may hold, besides scikit-learn's,
        skhyper's, numpy's and builtins.

    Returns
    -------
    HypercolumnSegmenter
        Fitted; predicts what the saved model predicted. Its ``metadata_`` attribute is the
        dict passed to :func:`save` as ``metadata`` (empty for files saved without one, and
        for files written before the field existed); JSON turns dict keys into strings.

    Raises
    ------
    ValueError
        The file is not a skhyper model file, its classifier holds an untrusted type, or it
        needs ``backbone``.
    """
    path = Path(path)
    config, tensors, head = _read_model_file(path)
    saved = config.get("skhyper_version")
    if saved != __version__:
        warnings.warn(InconsistentVersionWarning("HypercolumnSegmenter", saved, __version__),
                      stacklevel=2)
    classifier = _load_classifier(head, path, trusted)
    hc = _load_hypercolumns(config, tensors, path, backbone=backbone, device=device)
    defaults = config.get("defaults", [])
    seg = HypercolumnSegmenter(
        None if "hypercolumns" in defaults else clone(hc),
        None if "classifier" in defaults else clone(classifier),
        **_segmenter_params(config["params"]),
    )
    seg.hypercolumns_ = hc
    seg.classifier_ = classifier
    seg.classes_ = np.asarray(classifier.classes_)
    seg.folded_ = fold_head(classifier, hc.engine_.blocks)
    seg.prediction_path_ = "folded" if seg.folded_ is not None else "chunked"
    seg.metadata_ = dict(config.get("metadata") or {})
    return seg


def _read_model_file(path: Path) -> tuple[dict[str, Any], bytes, bytes]:
    """The config, the backbone tensors and the classifier of a model file of this format."""
    try:
        with zipfile.ZipFile(path) as zf:
            config = json.loads(zf.read("config.json"))
            tensors = zf.read("backbone.safetensors")
            head = zf.read("classifier.skops")
    except (OSError, KeyError, zipfile.BadZipFile, json.JSONDecodeError) as err:
        raise ValueError(
            f"The 'path' parameter {str(path)!r} is not a skhyper model file (written by "
            f"skhyper.save): {err}."
        ) from err
    if config.get("format") != FORMAT:
        raise ValueError(
            f"The 'path' parameter {str(path)!r} has format {config.get('format')!r}; this "
            f"skhyper reads {FORMAT!r}."
        )
    return config, tensors, head


def _load_classifier(head: bytes, path: Path, trusted: list[str] | None) -> Any:
    """The classifier, once every type it holds is trusted (nothing else is created)."""
    import skops.io

    untrusted = _untrusted(skops.io.get_untrusted_types(data=head), list(trusted or []))
    if untrusted:
        raise ValueError(
            f"The 'path' parameter {str(path)!r} has a classifier that holds types which are "
            f"not trusted: {untrusted}. Loading would create them (and may run their code). "
            "If you know where the file comes from and trust these types, pass "
            f"trusted={untrusted}."
        )
    trusted_all = [*skops.io.get_untrusted_types(data=head)]
    return skops.io.loads(head, trusted=trusted_all)


def _hypercolumn_params(config: dict[str, Any], backbone: torch.nn.Module | None,
                        device: str | None) -> tuple[dict[str, Any], Any, bool]:
    """The saved transformer's parameters as the constructor takes them (weights set aside),
    its weights parameter, and whether it had ``scales="auto"`` (rebuilt with the scales it
    learnt in fit)."""
    hc_params = dict(config["hypercolumns"])
    if config.get("backbone_module") is not None:
        if backbone is None:
            raise ValueError(
                f"The 'backbone' parameter is needed: this model's backbone is a user-defined "
                f"torch.nn.Module ({config['backbone_module']}); the file holds its weights, not "
                f"its code. Pass the same architecture: skhyper.load(path, "
                f"backbone={config['backbone_module']}(...))."
            )
        hc_params["backbone"] = backbone
    for key in ("scales", "intensity_range"):
        if isinstance(hc_params.get(key), list):
            hc_params[key] = tuple(hc_params[key])
    weights = hc_params.pop("weights", None)
    if device is not None:
        hc_params["device"] = device
    auto = hc_params.get("scales") == "auto"
    if auto:
        fitted = config.get("fitted_scales")
        hc_params["scales"] = None if fitted is None else tuple(fitted)
    # files written before the 'optimize' parameter hold unfolded tensors
    hc_params.setdefault("optimize", False)
    return hc_params, weights, auto


def _load_hypercolumns(config: dict[str, Any], tensors: bytes, path: Path, *,
                       backbone: torch.nn.Module | None,
                       device: str | None) -> HypercolumnTransformer:
    """The fitted transformer: rebuilt from its parameters, then the saved tensors loaded."""
    import safetensors.torch

    hc_params, weights, auto = _hypercolumn_params(config, backbone, device)
    hc = HypercolumnTransformer(**hc_params, weights=None)  # no download: tensors come next
    n = int(config["n_channels"])
    hc.fit_images([np.zeros((8, 8, n), dtype=np.float32)] if hc.channel_strategy in (
        "per_channel", "first_conv") else None)
    if auto:
        hc.set_params(scales="auto")
    state = safetensors.torch.load(tensors)
    bb = hc.engine_.backbone
    try:
        bb.load_state_dict({k: v.to(bb.mean.device) for k, v in state.items()})
    except RuntimeError as err:
        raise ValueError(
            f"The 'path' parameter {str(path)!r} holds backbone tensors that do not fit the "
            f"backbone {hc.engine_.backbone.name!r}: {err}"
        ) from err
    hc.set_params(weights=weights)
    return hc


def _segmenter_params(params: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in params.items() if k not in ("hypercolumns", "classifier")}

