"""Sources and sinks behind small interfaces (`connectors.base`)."""
