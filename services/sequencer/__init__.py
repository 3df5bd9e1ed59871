"""The sequencer: the one place where events get their global order."""
