"""ctframe built-in plugin folder_split (work in progress)."""
