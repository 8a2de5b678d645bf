"""charforge's built-in plugins, loaded through the ``charforge`` entry points like any other."""
