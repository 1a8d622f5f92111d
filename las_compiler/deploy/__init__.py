"""Compiled-model artifacts: write atomically, load and run with only the TVM runtime."""

from .artifact import LIBRARY_FILE, METADATA_FILE, ArtifactError, load_artifact, write_artifact
from .compiled_model import CompiledModel, load
from .inputs import read_input

__all__ = ["LIBRARY_FILE", "METADATA_FILE", "ArtifactError", "CompiledModel", "load",
           "load_artifact", "read_input", "write_artifact"]
