"""Soft prompts, one folder per method (config.py + model.py, PEFT-style):

- `prompt_tuning/`: prompt tuning (Lester et al. 2021), the baseline, and its PEFT export/import
- `prefix_tuning/`: prefix tuning (Li & Liang 2021), per-layer keys and values, and its PEFT export/import
- `idpt/`: input-dependent prompts (ID-PT), a frozen encoder read through cross-attention

What more than one method uses stays here: `encoders.py` (the frozen encoder of ID-PT and
the re-ranker). Prompt tuning is imported with the package; ID-PT and prefix tuning on
first use, as `shoulders` does.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from shoulders.prompts.prompt_tuning import PromptTuning, PromptTuningConfig
from shoulders.utils.lazy import lazy_exports

_LAZY = {  # name -> module that defines it
    "InputDependentPrompt": "shoulders.prompts.idpt.model",
    "IDPTConfig": "shoulders.prompts.idpt.config",
    "PrefixTuning": "shoulders.prompts.prefix_tuning.model",
    "PrefixTuningConfig": "shoulders.prompts.prefix_tuning.config",
}

if TYPE_CHECKING:  # for type checkers and IDEs; at run time `__getattr__` imports on first use
    from shoulders.prompts.idpt import IDPTConfig, InputDependentPrompt
    from shoulders.prompts.prefix_tuning import PrefixTuning, PrefixTuningConfig


__getattr__, __dir__ = lazy_exports(__name__, _LAZY, globals())


__all__ = ["PromptTuning", "PromptTuningConfig", *_LAZY]
