"""Results tool, sweep launcher and log parsing for the base-to-novel protocol."""
