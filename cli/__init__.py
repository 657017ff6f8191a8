"""The `snn-compress` command line: thin wrappers over library functions."""
