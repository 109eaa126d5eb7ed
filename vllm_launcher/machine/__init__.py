"""The machine: the hardware probe, ports/hosts/processes, and the server records on disk."""
