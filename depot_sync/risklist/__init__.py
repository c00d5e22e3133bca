"""The published risk list: its versions, delta pages and snapshot files."""
