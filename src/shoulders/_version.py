"""The library's version, in a module of its own: code that records it (module.json, index
metadata) imports this rather than `shoulders`, whose __init__ loads half the package."""

__version__ = "0.1.0"
