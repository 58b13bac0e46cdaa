"""The probe: network steps (one module each) and the web-connectivity flow that chains them.

Data flows dns → tcp → tls → http (→ throughput), each step bounded in time and bytes; the
``webconnectivity`` module turns one URL into one OONI data-format measurement and the
``runner`` runs many URLs concurrently and writes JSONL.
"""
