"""Test harnesses that run outside pytest (`hostile_campaign.py`, run in CI after the suite) and
the inputs they share with the tests (`hostile_inputs.py`)."""
