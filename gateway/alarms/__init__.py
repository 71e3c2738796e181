"""Alarms: rules as data (site file and rule packs), the lifecycle engine, notifications and actuation policy.

The engine, the outbox and the actuation policy are pure state machines (time passed in as epoch ms); only
`webhooks.post` touches the network."""
