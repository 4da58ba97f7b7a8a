"""Live sensor feeds: payload parsing and checks, the MQTT ingester, the Auckland pedestrian
counts reader and replayer. Storage and use cases live in ``urbansec.services.sensors`` and
``urbansec.services.sensor_ingest``."""
