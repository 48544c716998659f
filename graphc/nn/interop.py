"""Loading PyTorch weights: :func:`convert_torch_state_dict` turns a
``torch.nn.Module.state_dict()`` into numpy arrays keyed for a graphc model
of the same architecture.

Conv, batch-norm and layer-norm layers, embeddings and ``Sequential``
indices have PyTorch's names and layouts already (``Sequential`` counts plain
functions such as ``gc.relu`` as PyTorch counts ``nn.ReLU()``); the one
difference is ``Dense``, whose weight graphc stores as ``(in, out)``, the
transpose of ``torch.nn.Linear.weight``.
"""
from __future__ import annotations

from collections import OrderedDict

import numpy as np

from .errors import ConfigTypeError
from .layers import Dense
from .module import Module


def _numpy(v) -> np.ndarray:
    if hasattr(v, "detach"):            # a torch.Tensor (no import of torch needed)
        v = v.detach().cpu().numpy()
    return np.asarray(v)


def convert_torch_state_dict(module: Module, state) -> OrderedDict:
    """``state`` (a PyTorch state_dict, or any mapping of names to arrays or
    tensors) as numpy arrays for ``module.load_state_dict``: tensors become
    arrays and the weight of every ``Dense`` layer of ``module`` is
    transposed from ``torch.nn.Linear``'s ``(out, in)`` to ``(in, out)``::

        model.load_state_dict(gc.nn.convert_torch_state_dict(model, torch_model.state_dict()))
    """
    if not isinstance(module, Module):
        raise ConfigTypeError(f"convert_torch_state_dict: expected a Module, got "
                              f"{type(module).__name__}")
    if not hasattr(state, "items"):
        raise ConfigTypeError(f"convert_torch_state_dict: expected a mapping of names to "
                              f"tensors, got {type(state).__name__}")
    dense = {f"{pre}.weight" if pre else "weight" for pre, m in module.named_modules()
             if isinstance(m, Dense)}
    out = OrderedDict()
    for k, v in state.items():
        a = _numpy(v)
        out[k] = np.ascontiguousarray(a.T) if k in dense and a.ndim == 2 else a
    return out
