"""The protocols (folders, configs, train.py arguments), the sweep launcher, the results
tool, log parsing and dataset preparation (tools/README.md)."""
