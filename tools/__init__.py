"""Results tool, sweep launcher, protocols, log parsing and dataset preparation (tools/README.md)."""
