"""Floor between ``registry`` and ``runtime``: rules every dataset plugin shares, so two datasets never
disagree on them (today: the seeded, stratified, group-aware split in :mod:`ctframe.data.splits`).
No torch; plugins reach these names through :mod:`ctframe.api.data`."""
