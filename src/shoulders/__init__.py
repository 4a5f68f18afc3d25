"""shoulders: learn small neural modules around one frozen language model.

    from shoulders import FrozenLM, PromptTuning, PromptTuningConfig
    module = PromptTuning.from_pretrained("runs/sentiment/final", backbone=FrozenLM.from_pretrained("gpt2"))

Every module type's class and config is importable from here. Those outside prompt
tuning are imported on first use: the reader alone pulls in bm25s, faiss and scipy, which
`import shoulders` (and so every CLI command) should not pay for.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from shoulders._version import __version__
from shoulders.api import load
from shoulders.backbone import FrozenLM, Generation, GenerationConfig
from shoulders.data import Example, Task
from shoulders.modules import ModuleConfig, SoftModule, SoftPromptModule, load_module, save_module
from shoulders.prompts import PromptTuning, PromptTuningConfig
from shoulders.utils.lazy import lazy_exports

_LAZY = {  # name -> module that defines it
    "InputDependentPrompt": "shoulders.prompts.idpt.model",
    "IDPTConfig": "shoulders.prompts.idpt.config",
    "PrefixTuning": "shoulders.prompts.prefix_tuning.model",
    "PrefixTuningConfig": "shoulders.prompts.prefix_tuning.config",
    "Reader": "shoulders.reader.reader",
    "ReaderConfig": "shoulders.reader.reader",
    "CrossEncoderReranker": "shoulders.reader.reranker",
    "RerankerConfig": "shoulders.reader.reranker",
    "TextualRecursion": "shoulders.recursion.textual",
    "TextualRecursionConfig": "shoulders.recursion.textual",
    "NeuralRecursion": "shoulders.recursion.neural",
    "NeuralRecursionConfig": "shoulders.recursion.neural",
    "FullFinetune": "shoulders.modules.finetune",
    "FinetuneConfig": "shoulders.modules.finetune",
}

if TYPE_CHECKING:  # for type checkers and IDEs; at run time `__getattr__` imports on first use
    from shoulders.modules.finetune import FinetuneConfig, FullFinetune
    from shoulders.prompts.idpt import IDPTConfig, InputDependentPrompt
    from shoulders.prompts.prefix_tuning import PrefixTuning, PrefixTuningConfig
    from shoulders.reader.reader import Reader, ReaderConfig
    from shoulders.reader.reranker import CrossEncoderReranker, RerankerConfig
    from shoulders.recursion.neural import NeuralRecursion, NeuralRecursionConfig
    from shoulders.recursion.textual import TextualRecursion, TextualRecursionConfig


__getattr__, __dir__ = lazy_exports(__name__, _LAZY, globals())


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
    "ModuleConfig",
    "SoftModule",
    "SoftPromptModule",
    "PromptTuning",
    "PromptTuningConfig",
    *_LAZY,
]
