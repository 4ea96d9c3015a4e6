"""forge validate: detect a project's checks, run them in stages, report typed results."""
