"""shoulders: learn small neural modules around one frozen language model.

    from shoulders import FrozenLM, PromptTuning, PromptTuningConfig, load_module, save_module
"""
__version__ = "0.1.0"

from shoulders.api import load  # noqa: E402
from shoulders.backbone import FrozenLM, Generation, GenerationConfig  # noqa: E402
from shoulders.data import Example, Task  # noqa: E402
from shoulders.modules import load_module, save_module  # noqa: E402
from shoulders.prompts import PromptTuning, PromptTuningConfig  # noqa: E402

__all__ = [
    "__version__",
    "load",
    "FrozenLM",
    "Generation",
    "GenerationConfig",
    "Example",
    "Task",
    "load_module",
    "save_module",
    "PromptTuning",
    "PromptTuningConfig",
]
