"""Allow ``python -m tickercast``."""

from tickercast.cli import main

main()
