"""The daemon's side: firings, planning, dispatching, channels. Imports campaigns, never the reverse."""
