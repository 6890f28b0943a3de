"""Progressive delivery: step traffic to a new version, judge it, promote or roll back."""
