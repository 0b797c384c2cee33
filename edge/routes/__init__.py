"""HTTP routes, one module per concern; `edge.api.create_app` mounts them all."""
