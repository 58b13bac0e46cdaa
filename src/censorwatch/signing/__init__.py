"""Probe keys and measurement signatures: the first link of the evidence chain.

The probe signs (``signatures.sign_measurement``), the collector checks (``check_signature``),
the evidence bundle verifies offline; ``keys`` holds the key files and ``encoding`` the strict
byte spellings all three share. It sits below probe, collector and evidence so each can use it.
"""
