"""What auditors use: trip exports and contact traces."""
