"""One module per command. Each imports only typer at module level."""
