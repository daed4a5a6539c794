"""A relayed call: setup (:mod:`.setup`), the running call (:mod:`.call`), what ends it
(:mod:`.outcomes`, :mod:`.watch`), its events both ways (:mod:`.pipeline`), and the live calls of
this process (:mod:`.registry`)."""
