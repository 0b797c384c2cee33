"""Sinks: consumers of analysed records that read them from the store and never call each
other. `worker` feeds one sink from the store's `due` rows; each sink is a plug-in."""
