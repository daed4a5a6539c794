"""Shared state behind small async interfaces (:mod:`.base`): client secrets, rate windows,
and the directory of live calls. :mod:`.memory` keeps them in this process."""
