"""ctframe built-in plugin torchvision (work in progress)."""
