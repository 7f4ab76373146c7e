"""Order rules as pure functions over frozen values: no I/O."""
