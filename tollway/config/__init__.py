"""User manifests -> validated, typed resources (pure, plus reading files)."""
