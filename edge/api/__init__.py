"""The HTTP API and the page: the app (`app`), what routes read (`context`), who may ask what
(`guard`), the server as a daemon part (`server`), the routes one module per concern
(`routes/`) and the page's own files (`static/`)."""
