"""`python -m appliance.cli ...` is `almanac ...` (the tests and the detached server run it so)."""

from . import main

main()
