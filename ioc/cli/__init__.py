"""The `ioc` command: the top layer, the only code that imports the services and the extras."""

from ioc.cli.main import main

__all__ = ["main"]
