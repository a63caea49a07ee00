"""The architectures of the survey: a registry of builders, shared layers, one module per family."""

from export.zoo.registry import ModelSpec, UnknownModelError, build_model, get_spec, list_models, register_model

__all__ = ["ModelSpec", "UnknownModelError", "build_model", "get_spec", "list_models", "register_model"]
