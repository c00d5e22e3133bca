"""Background work: snapshots, the Ministry refresh, partitions and housekeeping."""
