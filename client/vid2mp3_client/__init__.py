"""The `vid2mp3` command: converts a video on a vid2mp3 deployment (the local stack by default) end to end."""
