"""Importing OONI's open data (its public bucket layout) into the archive and the store."""
