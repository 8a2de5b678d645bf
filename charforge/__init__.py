"""charforge: train and sample character-level recurrent language models.

Importing the package stays cheap (no torch); the Python API loads on first use.
"""

__version__ = "0.1.0"
