"""`campaigns demo`: a believable shop, three campaigns, simulated recipients, real reports."""
