"""Optional parts, installed with `pip install 'ioc-backend[demo]'`: the embedded MQTT broker
(`broker`) and the one-machine demo (`demo`). They import only the core; no service imports
them, and the production image leaves them out (docker/Dockerfile.dockerignore)."""
