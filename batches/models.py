"""Provider batch jobs: the state machine arrives with the batch issue."""
