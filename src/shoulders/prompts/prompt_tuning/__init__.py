"""Prompt tuning (Lester et al. 2021): N learned vectors before every input.

One folder, as every method: the config (`config.py`: `PromptTuningConfig`, and the
`PromptSpec` of one learned prompt that recursion shares), the module and its
initialisation (`model.py`) and PEFT `PROMPT_TUNING` export and import (`peft_io.py`).
"""
from shoulders.prompts.prompt_tuning.config import PromptSpec, PromptTuningConfig
from shoulders.prompts.prompt_tuning.model import PromptTuning

__all__ = ["PromptSpec", "PromptTuning", "PromptTuningConfig"]
