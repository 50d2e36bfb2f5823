"""The runtime: Faust app and batch agents, topics, the embedded broker, the CLI."""
