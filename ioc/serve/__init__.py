"""`ioc serve`: the REST API (`api`) and the wall hub (`wall`) in one process.

A service: it imports the core, never the ingest or the camera service; what it knows of
them comes through the contracts in `ioc.core.contracts` and the tables in storage.
"""
