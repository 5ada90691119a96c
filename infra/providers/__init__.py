"""Pulumi dynamic providers: thin adapters over the migration engine."""
