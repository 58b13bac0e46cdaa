"""The HTTP API: OONI-shaped queries over the store, the collector protocol, health, metrics."""
