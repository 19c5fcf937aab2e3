"""Floor 8, the ``ctframe`` command line: one module per command on the shared application."""
