"""The control service: the same steps as the probe, from an uncensored vantage."""
