"""HTTP routes, one module per concern; `edge.api.app.create_app` mounts them all."""
