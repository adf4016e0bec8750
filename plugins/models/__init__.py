"""Built-in model architectures, registered through the `unlearnkit` entry point (no torch import here)."""

from unlearnkit import hookimpl

from .catalog import MODELS


@hookimpl
def register_models(register):
    for cls in MODELS:
        register(cls)
