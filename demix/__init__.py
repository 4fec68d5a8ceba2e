"""demix: classical blind audio source separation (ICA, NMF, second-order methods) and its evaluation."""

__version__ = "0.1.0"
