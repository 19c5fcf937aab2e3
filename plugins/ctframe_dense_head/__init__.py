"""ctframe built-in plugin dense_head (work in progress)."""
