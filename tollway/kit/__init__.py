"""Tiny shared building blocks with no Tollway imports (pure)."""
