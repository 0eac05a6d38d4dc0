"""The HTTP side: endpoints, wire types, the OpenAPI document, pages."""
