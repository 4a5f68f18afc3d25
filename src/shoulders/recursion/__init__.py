"""Recursive LM: the same frozen LM applied twice (textual and neural recursion, gating).

- `TextualRecursion` (module type `textual_recursion`): pass 1 samples n answers, pass 2
  reads them merged with counts (`Candidates: Paris (3); Lyon (1). <question>`). Trained in
  two stages (`stage: pass1`, then `stage: pass2` with `init_from`).
- `NeuralRecursion` (`neural_recursion`): pass 1's final hidden states -> `Connector` ->
  input vectors of pass 2; trained end to end; `pretrain_connector` teaches the Connector
  plain-text hand-over first (or `lm_pretrain` in the config: a stage the Trainer runs
  before task training; building never trains).
- Gating (`GateConfig` in both configs, `shoulders.recursion.gated`): pass 2 only when
  pass 1's confidence is below a threshold; `gate_sweep` traces accuracy against passes.
- The stand-in world the tiny CPU configs train on (a synthetic 1-hop/2-hop fact world
  and two tiny pre-trained backbones) is an experiment: `shoulders experiment
  recursion-standin`, in `shoulders.experiments.recursion_standin`.
"""
from shoulders.recursion.candidates import Candidates, SamplingConfig, format_candidates, merge_candidates
from shoulders.recursion.common import GateConfig, PromptSpec
from shoulders.recursion.connector import Connector, ConnectorConfig
from shoulders.recursion.gated import gate_sweep, gated_generate, plot_gate_sweep
from shoulders.recursion.neural import NeuralRecursion, NeuralRecursionConfig
from shoulders.recursion.pretrain import LMPretrainConfig, pretrain_connector
from shoulders.recursion.textual import TextualRecursion, TextualRecursionConfig

__all__ = [
    "Candidates", "SamplingConfig", "format_candidates", "merge_candidates", "GateConfig", "PromptSpec",
    "Connector", "ConnectorConfig", "gate_sweep", "gated_generate", "plot_gate_sweep",
    "NeuralRecursion", "NeuralRecursionConfig", "LMPretrainConfig", "pretrain_connector",
    "TextualRecursion", "TextualRecursionConfig",
]
