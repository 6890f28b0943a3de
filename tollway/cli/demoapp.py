"""`tollway demo-app`: run the bundled demo workload (what the examples' `command:` runs)."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    @app.command("demo-app")
    def demo_app() -> None:
        """Run the demo workload on $PORT (see tollway.demo.app for its env vars)."""
        from tollway.demo import app as demo

        demo.run()
