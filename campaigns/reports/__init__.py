"""Reports: what each campaign reached, caused and earned; loyalty metrics. Read-only."""
