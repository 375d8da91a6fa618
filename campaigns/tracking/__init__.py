"""Response tracking: the HTTP app (opens, clicks, unsubscribes, confirmations, inbound SMS,
bounce and purchase webhooks) and the services it records through."""
