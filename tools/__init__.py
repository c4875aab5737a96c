"""The protocols (folders, configs, train.py arguments), the sweep launcher, the results
tool and log parsing."""
