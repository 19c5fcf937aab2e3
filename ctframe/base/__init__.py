"""Floor 0, the vocabulary: errors, component kinds, options, contracts and hook specs.

Standard library, pluggy and pydantic only (torch appears in type hints alone), so that
``import ctframe`` stays cheap. Imports nothing else of ctframe.
"""
