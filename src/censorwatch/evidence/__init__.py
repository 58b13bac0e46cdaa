"""Evidence that anyone can check without trusting us: signed measurements, an append-only
RFC 9162 Merkle log, and bundles that verify offline (docs/evidence.md).

Modules, in the order the data meets them: ``keys`` and ``signing`` (the probe),
``log`` and ``api`` (the collector), ``bundle`` and ``report`` (export and verify),
``monitor`` (watching the log); ``merkle`` and ``formats`` hold the math and the byte formats.
"""
