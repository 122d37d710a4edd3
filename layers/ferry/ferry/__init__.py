"""Ferry's shared library: everything the step handlers do, in one place."""
