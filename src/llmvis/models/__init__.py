"""Loading models: the bundled SmolLM2, local HF directories, GGUF files, the offline HF cache."""

from llmvis.models.errors import ModelLoadError
from llmvis.models.info import ModelInfo
from llmvis.models.load import load_model
from llmvis.models.loaded import LoadedModel
from llmvis.models.sources import SourceEntry, list_sources

__all__ = ["LoadedModel", "ModelInfo", "ModelLoadError", "SourceEntry", "list_sources", "load_model"]
