"""Floor 3, running models: the classifier, devices, precision, speed settings, torchrun, prediction
loops, model loading and reading files as training did.
"""
