"""Who we may message, and what they did: contacts, the consent ledger, suppression, purchases, imports."""
