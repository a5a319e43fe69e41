"""Tests of the agent's IMA and measured-boot log readers and the IMA emulator."""
