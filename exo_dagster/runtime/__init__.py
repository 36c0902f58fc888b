"""One step at run time: its compute (templates filled, secrets resolved and masked, rows mapped), timeouts,
leak guard."""
