"""The pipeline around the stacks: ephemeral stacks per pull request, and the rollback rehearsal on them."""
