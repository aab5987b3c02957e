"""The built-in emulator's old import name, kept in this checkout only (not in the installed package).

The package is ``dts_emulator``: a top-level ``emulator`` in a user's environment could clash with
their own module. ``python -m emulator`` still works here, and says what replaced it.
"""
