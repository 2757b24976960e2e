"""What the wall, console and tablets load, and the wall's layout presets, as package data."""

from pathlib import Path

HERE = Path(__file__).resolve().parent
STATIC = HERE / "static"
LAYOUTS = HERE / "layouts"
