"""mbiapo: policy optimization as planning, model-free and model-based."""

__version__ = "0.6.0"
