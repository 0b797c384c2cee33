"""Search: the keyword index (`index`, Tantivy), the vector indexes (`vectors`), label counts
(`facets`), the semantic side (`semantic`) and the modes fused (`hybrid`)."""
