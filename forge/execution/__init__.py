"""Execution: one task from prompt to validated commit (worktree, context, edits, attempts)."""
