"""Per-layer timing: where a model spends its time, layer by layer, mapped to its PyTorch modules.

    from service.profile import Profiler, ProfileRequest, ProfileTarget
    target = ProfileTarget(name, version, model_dir, manifest, providers=["CPUExecutionProvider"])
    response = Profiler().profile(target, ProfileRequest(group_by="layer", depth=2))

Two timing methods (the response says which produced the numbers):
- `onnxruntime-profiler` (default on CPU): onnxruntime's profiler in a separate session, node times
  mapped back to modules (mapping.py, trace.py);
- `prefix-differences` (default on GPU providers, or method="prefix"): prefix models cut after each
  group, timed with IO binding and synchronisation, paired differences (prefix.py).

Modules: mapping (nodes -> modules), trace (profiler session and trace), prefix (prefix differences),
aggregate (rows), guard (bounds, one at a time per model, cache), profiler (the orchestration),
schema (request/response), table (terminal rendering). `python -m service.profile` is the CLI twin.
"""

from service.profile.guard import ProfileGuard, ProfileInProgress, ProfileLimits
from service.profile.mapping import ModuleMap
from service.profile.profiler import Profiler, ProfileTarget, layer_table, resolve_method
from service.profile.schema import (
    PREFIX,
    PROFILER,
    LayerTable,
    ProfileRequest,
    ProfileResponse,
    ProfileRow,
)
from service.profile.table import render_table

__all__ = [
    "PREFIX",
    "PROFILER",
    "LayerTable",
    "ModuleMap",
    "ProfileGuard",
    "ProfileInProgress",
    "ProfileLimits",
    "ProfileRequest",
    "ProfileResponse",
    "ProfileRow",
    "ProfileTarget",
    "Profiler",
    "layer_table",
    "render_table",
    "resolve_method",
]
