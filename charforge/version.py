"""charforge's version, in a module of its own so that no core module imports the package's front door."""

__version__ = "0.1.0"
