"""An emulated censored country on one machine, built from Linux network namespaces.

``scenario`` reads what should exist, ``plan`` decides every address, ``netns`` talks to the
kernel, ``censor`` turns censorship methods into firewall rules and daemon policy,
``manager`` brings it all up and down, ``scheduler`` switches censors on time, ``services``
are the programs that run inside the namespaces.
"""
