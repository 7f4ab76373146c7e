"""Commission rules as pure functions and frozen values: no I/O, no await."""
