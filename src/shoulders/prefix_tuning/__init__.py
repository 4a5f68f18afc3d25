"""Prefix tuning (Li & Liang 2021): learned keys and values before every input, in every layer.

Everything the method needs is in this folder: the config and the module (`model.py`) and
PEFT `PREFIX_TUNING` export and import (`peft_io.py`). The backbone supplies the hook
(`shoulders.backbone.layout.KVPrefix`), the rest of shoulders the protocol.
"""
from shoulders.prefix_tuning.model import PrefixTuning, PrefixTuningConfig

__all__ = ["PrefixTuning", "PrefixTuningConfig"]
