"""The `mqtt` sink: each analysed record's event (and alert) published, at least once, from
the store (`sink`), over a connection that keeps itself up (`link`); the payloads and their
JSON Schema in `events`."""
