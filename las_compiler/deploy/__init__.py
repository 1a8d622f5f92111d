"""Compiled-model artifacts: write atomically, load with only the TVM runtime."""

from .artifact import LIBRARY_FILE, METADATA_FILE, ArtifactError, load_artifact, write_artifact

__all__ = ["LIBRARY_FILE", "METADATA_FILE", "ArtifactError", "load_artifact", "write_artifact"]
