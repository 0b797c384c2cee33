"""Search: the engine the device and the fleet share (`engine`: modes, fusion, why each hit
matched, over a backend), its parameters and answer over HTTP (`http`), the semantic side
(`semantic`), and the device's backend (`device`) over its indexes (`indexes`): the keyword
index (`index`, Tantivy, with `query` bounding what reaches it and `facets` counting labels)
and the vector indexes (`vectors`)."""
