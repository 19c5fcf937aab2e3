"""Floor 6, what a command does, as library functions tests call directly: a run, cross-validation,
evaluation on external data, prediction on files, scoring, comparison, export, explanations and
dataset audits.
"""
