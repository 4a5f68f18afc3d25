"""Tasks, examples, loaders, metrics and multi-task mixtures."""
from shoulders.data.examples import Example, Task
from shoulders.data.metrics import (
    METRICS,
    accuracy,
    exact_match,
    normalize_answer,
    rouge_l,
    score,
    token_f1,
)

__all__ = [
    "Example",
    "Task",
    "METRICS",
    "accuracy",
    "exact_match",
    "normalize_answer",
    "rouge_l",
    "score",
    "token_f1",
]
