"""The sign-in bridge."""
