"""The discrete-event runtime: drives the production protocol core on a virtual clock."""
