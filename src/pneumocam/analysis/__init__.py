"""What the maps say: importance scores, anatomical regions, trust checks, group statistics, comparing runs."""
