"""Fuzz suite: bad inputs of every kind end in a clear error or a safe hold, never a silent wrong result."""
