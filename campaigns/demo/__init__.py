"""`campaigns demo`: a believable shop, three campaigns and a post-purchase journey, simulated recipients, real reports."""
