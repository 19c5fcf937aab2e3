"""ctframe built-in plugin classification_metrics (work in progress)."""
