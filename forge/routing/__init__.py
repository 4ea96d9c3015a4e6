"""Routing: analyse a task, then choose its ladder, first tier, model and escalation.

The pieces, in the order a route is made: `analysis` (what the task is), `fleet` (the models
and what the ledger says about them now), `decision` (the route), `estimate` (what it may cost),
`history` (what earlier routes in this repository taught), `report` (explanation and JSON).
"""
