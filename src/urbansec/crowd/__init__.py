"""Crowd safety maths: zones, occupancy and density, level of service, trends, rules and
alerts, nowcasts and anomalies.

Pure like ``analysis/`` and ``forecast/``: numpy arrays and small frozen objects in, results
out; no database, no web, no clock (the caller passes ``now``). The sensor ingesters, services,
API and dashboard call these functions once per zone and minute (or per counter and hour).

Modules:

- :mod:`~urbansec.crowd.zones`: zone types, usable areas, capacities, events.
- :mod:`~urbansec.crowd.density`: occupancy from in/out flows and area counts, density
  (persons/m²), flow (persons/m/min), beacon-based estimates with an explicit calibration.
- :mod:`~urbansec.crowd.los`: Fruin's level-of-service scales and standing-crowd thresholds,
  configurable per zone type.
- :mod:`~urbansec.crowd.trend`: robust slope and minutes until a threshold at the current rate.
- :mod:`~urbansec.crowd.rules`: threshold, level-of-service, flow, trend, sensor-silent,
  failed-light and geofence rules producing de-duplicated alerts.
- :mod:`~urbansec.crowd.nowcast`: hourly forecasts 1-6 h ahead with 80 % intervals.
- :mod:`~urbansec.crowd.anomaly`: anomalies against the expected profile, merged into episodes.
"""
