"""Soft prompts: prompt tuning (the baseline) and input-dependent prompts (ID-PT)."""
from shoulders.prompts.prompt_tuning import PromptTuning, PromptTuningConfig

__all__ = ["PromptTuning", "PromptTuningConfig"]
