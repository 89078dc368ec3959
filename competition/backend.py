"""Which Keras backend the kit runs on: TensorFlow (the default), JAX or
PyTorch, chosen as Keras chooses it (the `KERAS_BACKEND` environment
variable, else `~/.keras/keras.json`, else TensorFlow), read without
importing Keras, and checked to be installed before the work starts.
`make ... BACKEND=jax` sets the variable (competition/training/devices.py
has the devices each backend sees)."""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import json
import os
import sys
from pathlib import Path

from competition.errors import ConfigError

BACKENDS = ("tensorflow", "jax", "torch")
# The package each backend needs, and how to get it.
PACKAGES = {"tensorflow": "tensorflow", "jax": "jax", "torch": "torch"}


def chosen() -> str:
    """The backend Keras will load in this process."""
    name = os.environ.get("KERAS_BACKEND")
    if name:
        return name
    settings = Path(os.environ.get("KERAS_HOME", Path.home() / ".keras")) / "keras.json"
    try:
        return json.loads(settings.read_text()).get("backend", "tensorflow")
    except (OSError, ValueError):
        return "tensorflow"


def check() -> str:
    """The chosen backend, when the kit runs on it and it is installed; else
    a ConfigError naming the fix."""
    name = chosen()
    if name not in BACKENDS:
        raise ConfigError(
            f"KERAS_BACKEND must be one of {', '.join(BACKENDS)} (make ... BACKEND=jax). "
            f"Received: {name!r}"
        )
    if not installed(name):
        raise ConfigError(
            f"The Keras backend is {name} (KERAS_BACKEND) but {PACKAGES[name]} is not "
            f"installed in this environment. Set it up with `make setup BACKEND={name}` "
            "(GPU=1 for CUDA), or run on another backend (BACKEND=tensorflow)."
        )
    return name


def installed(name: str) -> bool:
    """Whether the backend's framework is on this environment's path (looked
    up on sys.path itself: `isolate` hides it from the import system)."""
    return importlib.machinery.PathFinder.find_spec(PACKAGES[name]) is not None


def isolate() -> None:
    """Keep the other backends' frameworks out of this process: Keras imports
    them whenever they are installed (TensorFlow, to seed it for tf.data and
    recognise its types while saving; JAX, in its checkpoint callbacks),
    which would load a second and a third framework for nothing. A framework
    already loaded stays. Called by the commands, the Kaggle kernel and the
    cluster's tasks."""
    name = chosen()
    for other in sorted(set(PACKAGES.values()) - {PACKAGES.get(name)}):
        already = any(isinstance(f, _NotHere) and f.name == other for f in sys.meta_path)
        if other not in sys.modules and not already:
            sys.meta_path.insert(0, _NotHere(other))


class _NotHere(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """A package that cannot be imported: its spec has no origin (code that
    probes with importlib.util.find_spec, as PyTorch's compiler does, takes
    it for absent) and loading it raises ModuleNotFoundError (code that
    tries the import, as Keras does, takes it for not installed)."""

    def __init__(self, name: str):
        self.name = name

    def find_spec(self, fullname, path=None, target=None):
        if fullname == self.name or fullname.startswith(self.name + "."):
            return importlib.machinery.ModuleSpec(fullname, self, origin=None)
        return None

    def create_module(self, spec):
        raise ModuleNotFoundError(
            f"{self.name} is not loaded on the {chosen()} backend", name=spec.name
        )

    def exec_module(self, module):  # never reached: create_module refuses
        raise ModuleNotFoundError(self.name)
