"""The ``streamgd`` command line: thin commands over the Python API, and its inspect reports."""
