"""The errors ``open_store`` raises, in a module of their own so that backends can raise them
without importing the package that dispatches to them."""

from __future__ import annotations


class UnsupportedStoreError(ValueError):
    """The store URL names a backend this build does not have, or a store this code cannot
    read (its schema is newer, or older and the store was opened read-only)."""


class StoreNotFoundError(FileNotFoundError):
    """A store opened for reading does not exist, or its server does not answer."""


class StoreUnavailableError(StoreNotFoundError, UnsupportedStoreError):
    """The store's server does not answer. Both a missing and an unusable store, so that every
    command that reports either in one line reports this one the same way."""
