"""``python -m emulator``: the command from before the rename; runs ``python -m dts_emulator``."""

import sys

from dts_emulator.cli import main

print("note: `python -m emulator` is now `python -m dts_emulator` (or `make emulator`)", file=sys.stderr)
raise SystemExit(main(sys.argv[1:]))
