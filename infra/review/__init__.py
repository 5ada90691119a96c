"""The PR review report: what each stack will do with the checked-out batches, as Markdown."""
