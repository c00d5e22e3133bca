"""The depot's HTTP endpoints: one module per group of users."""
