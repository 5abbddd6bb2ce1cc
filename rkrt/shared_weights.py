"""Opening a model on another context's weights (RKNN_FLAG_SHARE_WEIGHT_MEM with
rknn_init_extend.ctx, as the official header documents)."""

from __future__ import annotations

from typing import Any

from ._ffi import DEFINES, ffi
from .context import Context
from .errors import UnsupportedRuntimeError, check
from .library import Runtime

FLAG_SHARE_WEIGHTS = DEFINES["RKNN_FLAG_SHARE_WEIGHT_MEM"]

# The RKNN API user guide (1.5.2, "Dynamic shape input") lists shared weights among what
# dynamic-shape models do not support; no later release says otherwise.
_NO_DYNAMIC_SHARING = (
    "share_weights= with a dynamic-shape model (several input shapes) is not supported: the "
    "RKNN API user guide (1.5.2, 'Dynamic shape input') excludes shared weights for such "
    "models. Open the Session without share_weights= (it loads its own weights)"
)


def refuse_dynamic(context: Context) -> None:
    """UnsupportedRuntimeError when ``context`` (source or sharer) is a dynamic-shape model."""
    if context.is_dynamic:
        raise UnsupportedRuntimeError(_NO_DYNAMIC_SHARING)


def init_sharing(source: Context, runtime: Runtime, ctx_out: Any, buf: Any, flags: int) -> None:
    """rknn_init of the model in ``buf`` into ``ctx_out``, computing with ``source``'s weights;
    ``flags`` must include FLAG_SHARE_WEIGHTS."""
    if runtime is not source.runtime:
        raise ValueError(
            "share_weights must be a Session of the same librknnrt: open both with the "
            "same library="
        )
    extend = ffi.new("rknn_init_extend*")
    with source.lock:  # the runtime reads this context while it initialises
        extend.ctx = source.live_handle()
        check(runtime.lib.rknn_init(ctx_out, buf, len(buf), flags, extend), "rknn_init")
