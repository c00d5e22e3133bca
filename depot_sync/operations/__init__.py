"""What operations staff run: the fleet, enrolled devices, operators and the boarding policy."""
