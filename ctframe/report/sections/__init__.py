"""The core's report sections, by topic; :mod:`ctframe.report.core_sections` is their one table.

Each builder reads the core's own files only (``report.run``, a
:class:`~ctframe.report.artifacts.RunArtifacts`) and names a missing input instead of failing.
Nothing is imported here: numpy and matplotlib load with the modules that draw.
"""
