"""The observations tier: the only reader of raw measurements.

Bytes or files in (``reader``), a typed view of the fields anyone reads (``schema``), flat rows
out (``builder``: one per DNS query, TCP connect, TLS or QUIC handshake, HTTP transaction, and
the control's view), and the text helpers every reader shares (``text``: titles, headers,
bodies). The analysis, the explorer's step tables, the evidence report and the probe's summary
all read observations, so they say the same thing about one measurement.
"""
