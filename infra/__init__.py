"""Provisioning of the junk-removal quoting service's PostgreSQL database: roles, grants and schema batches."""
