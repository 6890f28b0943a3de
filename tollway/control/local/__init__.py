"""Tollway package."""
