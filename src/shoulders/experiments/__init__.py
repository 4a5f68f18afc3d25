"""The paper's experiments at toy scale: functions that take tasks and a backbone path
and return the numbers (and write the figures) the demo reports."""
