-- hesgate depot: indexes for contact tracing (depot_sync/trace.py).
-- Created on the partitioned parent, so every day partition has them, including the ones
-- ensure_tap_partition attaches later (ATTACH PARTITION builds a partition's missing indexes).

-- An index credential's taps in a time range.
CREATE INDEX taps_key_time ON taps (key, time_ms);

-- Everyone who tapped on a vehicle around a given time.
CREATE INDEX taps_vehicle_time ON taps (vehicle, time_ms);
