"""The dashboard tests' shared fixture: `browser` (headless Chromium, see browser_kit)."""

from tests.dashboard.browser_kit import browser

__all__ = ["browser"]
