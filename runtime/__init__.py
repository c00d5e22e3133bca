"""What both programs need to start: configuration loading and logging setup."""
