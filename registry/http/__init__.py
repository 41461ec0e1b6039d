"""The HTTP layer: ``create_app``, the request context, the JSON API, the web pages, OpenAPI."""
