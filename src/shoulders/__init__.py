"""shoulders: learn small neural modules around one frozen language model."""
__version__ = "0.1.0"
