"""Input-dependent prompt tuning (ID-PT; Levine et al. 2022): a prompt generated per input.

One folder, as every method: the config (`config.py`), the module (`model.py`) and its
cross-attention network (`cross_attention.py`). The frozen encoder it reads inputs with
is shared with the re-ranker, so it stays in `shoulders.prompts.encoders`.
"""
from shoulders.prompts.idpt.config import IDPTConfig
from shoulders.prompts.idpt.model import EncoderMismatchError, InputDependentPrompt

__all__ = ["EncoderMismatchError", "IDPTConfig", "InputDependentPrompt"]
