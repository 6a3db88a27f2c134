"""SLA: the business calendar, the net-working-time clock, escalations and close requests.

Not built yet (issue #5). `maild tick` already runs the duties that exist — threading stored
mail and delivering the outbox — and will run these through the same entry point.
"""
