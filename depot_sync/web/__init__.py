"""The operator page at ``/``: one static HTML file, no build step."""
