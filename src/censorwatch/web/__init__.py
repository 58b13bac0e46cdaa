"""The explorer: server-rendered pages over the store, for people who read rather than query."""
