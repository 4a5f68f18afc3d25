"""Training: typed configs, the trainer, checkpoints, evaluation and plots."""
from shoulders.train.config import ConfigError, TrainConfig, load_config
from shoulders.train.evaluate import evaluate, predict
from shoulders.train.trainer import Trainer, TrainResult, train

__all__ = ["ConfigError", "TrainConfig", "load_config", "evaluate", "predict", "Trainer", "TrainResult", "train"]
