"""The `ferry` command: the sandbox, and the same steps run from a laptop."""
