"""The depot's side of the Ministry: the online check and the refresh of known codes."""
