"""Programs that run inside the testbed's namespaces (started by the manager, one per role)."""
