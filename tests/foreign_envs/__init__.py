"""A foreign env for tests: the package `toyforeign` here imports the way a user's own env package would (by name, from the current directory or sys.path), never as part of ours."""
