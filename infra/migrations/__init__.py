"""The migration engine: reads SQL batches, applies, validates and rolls them back. Knows nothing of Pulumi."""
