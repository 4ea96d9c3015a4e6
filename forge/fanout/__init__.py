"""`forge fanout`: one prompt to many models at once, streamed, compared and judged.

The pipeline reads in the order of its modules: `selection` picks the models (`roles` gives each
role its own), `execution` streams every answer at once into typed `Answer` values, `comparison`
and `code` measure where the answers agree, `judge` asks one model for a verdict or a synthesis,
`candidates` runs the validators on code answers, `run` strings these together, `batch` and
`stats` turn prompts x models into a leaderboard, `store` keeps every run in the ledger's
database, and `report` and `html` turn a run into JSON, Markdown or a self-contained page.
Nothing here imports the CLI or Rich.
"""
