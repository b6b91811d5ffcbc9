"""vid2mp3's test suite: offline checks, and integration tests against the local stack (`make up`)."""
