"""Typed, strict models of every kind Tollway reads, with upstream field names."""
