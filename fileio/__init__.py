"""Crash-safe file writes, sha256 digests and directory locks: the bottom layer, importing nothing of ours."""
