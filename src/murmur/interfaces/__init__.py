"""What people touch: the CLI, the local control API client, reports."""
