"""Station worker settings."""

from __future__ import annotations

from shared.settings import Settings


class StationSettings(Settings):
    # How long the case details (names, phones, address, description) of a closed or
    # cancelled order stay at the station before they are erased; how often that is looked at.
    station_personal_data_retention_s: float = 90 * 24 * 3600
    station_erasure_interval_s: float = 60.0
    # How often an open live stream checks that its token is still valid.
    station_stream_token_check_s: float = 2.0
