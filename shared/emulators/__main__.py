"""python -m shared.emulators install: set up the emulators that come from PyPI (bqemulator's venv)."""

import sys

from shared.emulators import install_bigquery_emulator

if sys.argv[1:] == ["install"]:
    install_bigquery_emulator()
else:
    print("usage: python -m shared.emulators install", file=sys.stderr)
    sys.exit(2)
