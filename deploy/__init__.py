"""Deployment: systemd units and example configurations, and the local demo stack (``demo``)."""
