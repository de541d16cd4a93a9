"""Command-line interfaces: click groups that parse, call the library and print. No logic."""
