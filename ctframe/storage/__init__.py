"""Floor 1, what a run keeps on disk: atomic writes, the run-directory layout, integrity records,
checkpoints, model files and history. Imports only :mod:`ctframe.base`.
"""
