"""Every ``censorwatch`` command, one module per verb or group; each is a thin shell."""
