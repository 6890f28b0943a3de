"""The compiled snapshot: the contract between control/ (builds it) and proxy/ (reads it)."""
