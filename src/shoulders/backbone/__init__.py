"""The frozen backbone: any HF causal LM, frozen, fed soft vectors before its tokens."""
from shoulders.backbone.frozen import FrozenLM, LMOutput
from shoulders.backbone.generation import Generation, GenerationConfig

__all__ = ["FrozenLM", "LMOutput", "Generation", "GenerationConfig"]
