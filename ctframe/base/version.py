"""The version of ctframe, recorded in every model file and run."""

__version__ = "0.1.0"
