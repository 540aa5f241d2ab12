"""Server-side alerts: organizations' rules checked against final transcripts."""
