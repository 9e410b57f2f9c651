"""Small real apps of the queue libraries the adapters read (offpath/queues/), each run by its own worker in tests."""
