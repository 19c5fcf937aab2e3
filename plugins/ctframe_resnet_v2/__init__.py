"""ctframe built-in plugin resnet_v2 (work in progress)."""
