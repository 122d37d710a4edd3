"""What every handler runs with: settings from the environment, the logger and the clock."""
