"""Subcommands that are not long-running roles."""
