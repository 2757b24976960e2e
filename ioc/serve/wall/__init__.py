"""The wall hub inside `ioc serve`: layouts, websocket fan-out (latest wins per tile per client),
alerts; `dashboards/PROTOCOL.md` is what the pages see of it."""
