"""ctframe built-in plugin two_phase (work in progress)."""
