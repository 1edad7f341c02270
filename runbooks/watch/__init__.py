"""Supervision of the seed's list (`drp watch`, flow `drp-watch`), without Prefect.

- `round.run_round`: every probe on every host, once (`records.WatchRound`);
- `alerts.AlertBook`: alert tickets on state changes, and the disaster alarm;
- `metrics`: the latest round as Prometheus metrics (HTTP or node_exporter's textfile);
- `render`: the round as a terminal table, JSON lines or a Prefect table's rows.
"""
