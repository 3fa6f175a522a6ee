"""Shared ground: the database schema, connections, ingestion and computed traits."""
