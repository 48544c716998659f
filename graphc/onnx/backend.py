"""graphc as an ``onnx.backend.base.Backend``, for ONNX's conformance tests
(``onnx.backend.test.BackendTest``): ``prepare(model)`` imports the model and
returns a rep whose ``run(inputs)`` compiles it with :func:`graphc.compile`
(once, at the first run) and calls it.

A model whose shapes depend on a graph input's values (an ``axes`` or
``shape`` input fed at run time) cannot be imported ahead of the values: its
rep imports it at ``run``, with exactly the inputs the import needs fixed as
constants (``onnx.load(..., constants=...)``), once per distinct value.

``GraphcBackend.compile_options`` (a dict) is passed to every compile, e.g.
``{"backend": "interp"}`` or ``{"opt_level": 1}``."""
from __future__ import annotations

import numpy as np

from ._deps import require_onnx

require_onnx()

from onnx import numpy_helper  # noqa: E402
from onnx.backend.base import Backend, BackendRep  # noqa: E402

from .convert import DynamicInputError  # noqa: E402
from .importer import load  # noqa: E402


def _array(a):
    return numpy_helper.to_array(a) if hasattr(a, "SerializeToString") else np.asarray(a)


class GraphcRep(BackendRep):
    def __init__(self, model, options):
        self.model = model
        self.options = options
        self.names = [vi.name for vi in model.graph.input
                      if vi.name not in {t.name for t in model.graph.initializer}]
        self._specialized = {}
        self._fixed = []                 # graph inputs the import needs as values
        self._f = None
        try:
            self.graph = load(model)
        except DynamicInputError:
            self.graph = None            # imported at run, per value of the inputs it needs

    def run(self, inputs, **kwargs):
        if isinstance(inputs, dict):
            feeds = {k: _array(v) for k, v in inputs.items()}
        else:
            vals = list(inputs) if isinstance(inputs, (list, tuple)) else [inputs]
            feeds = {k: _array(v) for k, v in zip(self.names, vals)}
        if self.graph is not None:
            if self._f is None:
                self._f = self.graph.compile(**self.options)
            return list(self._f(*(feeds[k] for k in self.graph.inputs)))
        key = tuple((k, feeds[k].dtype.str, feeds[k].shape, feeds[k].tobytes())
                    for k in sorted(self._fixed))
        if key not in self._specialized:
            while True:             # fix the graph inputs the import needs, one at a time
                try:
                    g = load(self.model, constants={k: feeds[k] for k in self._fixed})
                    break
                except DynamicInputError as e:
                    if e.tensor in feeds and e.tensor not in self._fixed:
                        self._fixed.append(e.tensor)
                        continue
                    # computed from graph inputs: fix the small ones (sizes, counts)
                    small = [k for k, v in feeds.items() if k not in self._fixed and v.size <= 8]
                    if not small:
                        raise
                    self._fixed += small
            key = tuple((k, feeds[k].dtype.str, feeds[k].shape, feeds[k].tobytes())
                        for k in sorted(self._fixed))
            self._specialized[key] = (g, g.compile(**self.options))
        g, f = self._specialized[key]
        return list(f(*(feeds[k] for k in g.inputs)))


class GraphcBackend(Backend):
    compile_options: dict = {}

    @classmethod
    def is_compatible(cls, model, device="CPU", **kwargs):
        return device == "CPU"

    @classmethod
    def prepare(cls, model, device="CPU", **kwargs):
        super().prepare(model, device, **kwargs)
        return GraphcRep(model, dict(cls.compile_options))

    @classmethod
    def run_model(cls, model, inputs, device="CPU", **kwargs):
        return cls.prepare(model, device, **kwargs).run(inputs)

    @classmethod
    def supports_device(cls, device):
        return device == "CPU"


prepare = GraphcBackend.prepare
run_model = GraphcBackend.run_model
supports_device = GraphcBackend.supports_device
