"""The pass pipeline: graph-to-graph rewrites, then kernel and memory planning.

Default order: fold, simplify, cse, dce (graph passes, opt_level >= 1), then
fusion and memory (planning, always run). ``register_pass`` adds more.
"""
from . import fusion, memory, simplify  # noqa: F401 - importing registers the passes
from .manager import (
                      DEFAULT_ORDER,
                      PASSES,
                      Pass,
                      PassContext,
                      PassRecord,
                      Pipeline,
                      PipelineError,
                      check_order,
                      default_pipeline,
                      pass_list,
                      register_pass,
)

DEFAULT_ORDER[:] = ["fold", "simplify", "cse", "dce", "fusion", "memory"]

__all__ = ["DEFAULT_ORDER", "PASSES", "Pass", "PassContext", "PassRecord", "Pipeline",
           "PipelineError", "check_order", "default_pipeline", "pass_list", "register_pass"]
