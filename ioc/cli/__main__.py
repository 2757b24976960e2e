"""`python -m ioc.cli`: how the demo, the tests and the benchmarks start each service."""

from ioc.cli.main import main

main()
