"""`make bench`: shows that applying a batch does not impact existing write traffic (see bench/RESULTS.md)."""
