"""Baton's event contracts: pydantic models and their CloudEvents Kafka binding."""
