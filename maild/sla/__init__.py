"""SLA: the business calendar, the net-working-time clock, and the timer duties.

- `calendar`  business hours, holidays and time zones: business time between and after instants;
- `clock`     a ticket's net working time, recomputed from its status history;
- `state`     a stored ticket's SLA at an instant, as `--json` and as people see it;
- `duties`    escalation, breach, close request and auto-close, once per period, for the
              daemon's timer and `maild tick`;
- `report`    `maild sla report`.
"""
