"""The core: shared by every service, importing none of them (see `ioc/__init__.py`)."""
