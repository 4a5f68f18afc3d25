"""Prefix tuning (Li & Liang 2021): learned keys and values before every input, in every layer.

One folder, as every method: the config (`config.py`), the module (`model.py`) and PEFT
`PREFIX_TUNING` export and import (`peft_io.py`). The backbone supplies the hook
(`shoulders.backbone.layout.KVPrefix`), the rest of shoulders the protocol.
"""
from shoulders.prompts.prefix_tuning.config import PrefixTuningConfig
from shoulders.prompts.prefix_tuning.model import PrefixTuning

__all__ = ["PrefixTuning", "PrefixTuningConfig"]
