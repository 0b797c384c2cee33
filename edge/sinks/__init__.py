"""Sinks: consumers of analysed records that read them from the store and never call each
other. A sink is a plug-in (`plugin`: its config section, whether it is on, the part it
builds) found through the `registry`; `worker` feeds one sink the records it owes. Built in:
the search index (`index`) and MQTT (`mqtt/`); cloud sync's S3 sink comes as an entry point."""
