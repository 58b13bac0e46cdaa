"""Accepting measurements: checks, scrubbing, the durable archive, and the probe-side client."""
