"""Serving: one frozen backbone behind an OpenAI-compatible HTTP API, many modules at once.

Requests for different soft-prompt modules share every forward pass of the backbone
(each row carries its own soft prefix) and join or leave the running batch between
decode steps. `shoulders serve --backbone B --modules DIR`; see docs/serving.md.
"""
from shoulders.serving.app import create_app
from shoulders.serving.engine import Engine, QueueFull
from shoulders.serving.jobs import ServingError
from shoulders.serving.registry import ModuleRegistry, valid_name
from shoulders.serving.settings import ServeSettings

__all__ = ["ServeSettings", "create_app", "Engine", "QueueFull", "ServingError", "ModuleRegistry", "valid_name"]
