"""The logger: archives the sequenced stream, serves it back, and shows it (--tail, --check)."""
